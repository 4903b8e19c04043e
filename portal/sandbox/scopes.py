"""SMART App Launch scopes, v1 (`patient/Observation.read`) and v2 (`patient/Observation.rs`).

v2 scopes may narrow a grant with search parameters, e.g.
`patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory`.
The sandbox understands `category` (and any other token parameter by the same rule).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
_V2 = re.compile(r"^c?r?u?d?s?$")
_SCOPE = re.compile(
    r"^(?P<ctx>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<perm>[^?]+)(?:\?(?P<q>.+))?$"
)
LAUNCH_SCOPES = {"launch", "launch/patient", "launch/encounter"}
IDENTITY_SCOPES = {"openid", "fhirUser", "profile"}
REFRESH_SCOPES = {"offline_access", "online_access"}


@dataclass(frozen=True)
class ResourceScope:
    """One parsed resource scope."""

    context: str
    resource_type: str  # a FHIR type or "*"
    permissions: frozenset[str]  # subset of "cruds"
    params: tuple[tuple[str, str], ...]
    version: int

    def applies_to(self, resource_type: str) -> bool:
        return self.resource_type in ("*", resource_type)


def parse_scope(scope: str) -> ResourceScope | None:
    """Parse one resource scope; None for non-resource scopes and for malformed ones."""
    m = _SCOPE.match(scope)
    if not m:
        return None
    perm, query = m["perm"], m["q"]
    if perm in V1_PERMISSIONS:
        if query:  # v1 has no parameters
            return None
        return ResourceScope(m["ctx"], m["type"], frozenset(V1_PERMISSIONS[perm]), (), version=1)
    if not perm or not _V2.match(perm):
        return None
    params = tuple(sorted(parse_qsl(query, keep_blank_values=False))) if query else ()
    return ResourceScope(m["ctx"], m["type"], frozenset(perm), params, version=2)


def is_known_scope(scope: str) -> bool:
    """True for every scope this server can grant."""
    return (
        scope in LAUNCH_SCOPES
        or scope in IDENTITY_SCOPES
        or scope in REFRESH_SCOPES
        or parse_scope(scope) is not None
    )


def covers(allowed: str, requested: str) -> bool:
    """Whether a client's registered scope `allowed` permits asking for `requested`."""
    if allowed == requested:
        return True
    a, r = parse_scope(allowed), parse_scope(requested)
    if a is None or r is None or a.context != r.context:
        return False
    if a.resource_type != "*" and a.resource_type != r.resource_type:
        return False
    if not r.permissions <= a.permissions:
        return False
    return not a.params or set(a.params) <= set(r.params)


TokenFilter = tuple[str | None, str]  # (system or None, code)


class Access:
    """What a token's scope string lets its holder do with patient data."""

    def __init__(self, scope: str) -> None:
        self.scopes = [
            s
            for s in (parse_scope(x) for x in scope.split())
            if s is not None and s.context in ("patient", "user")
        ]

    def can(self, resource_type: str, permission: str) -> bool:
        """Any grant at all for this type and permission letter (c, r, u, d or s)?"""
        return any(s.applies_to(resource_type) and permission in s.permissions for s in self.scopes)

    def restrictions(
        self, resource_type: str, permission: str
    ) -> dict[str, list[TokenFilter]] | None:
        """Token filters a grant imposes: None = unrestricted, {} never (see `can`).

        Several grants are OR-ed: if any of them is unrestricted, the access is unrestricted;
        otherwise the result maps each parameter to the values some grant allows.
        """
        merged: dict[str, list[TokenFilter]] = {}
        for s in self.scopes:
            if not (s.applies_to(resource_type) and permission in s.permissions):
                continue
            if not s.params:
                return None
            for name, value in s.params:
                merged.setdefault(name, []).extend(split_token(v) for v in value.split(","))
        return merged

    def granted_types(self, permission: str) -> set[str]:
        """Types named in grants with this permission ("*" when a wildcard grant exists)."""
        return {s.resource_type for s in self.scopes if permission in s.permissions}


def split_token(value: str) -> TokenFilter:
    """`system|code` -> (system, code); `code` -> (None, code); `|code` -> ("", code)."""
    if "|" in value:
        system, code = value.split("|", 1)
        return system, code
    return None, value


def token_matches(filters: list[TokenFilter], values: list[tuple[str | None, str]]) -> bool:
    """Whether any of a resource's (system, code) values satisfies any filter."""
    for fsys, fcode in filters:
        for vsys, vcode in values:
            if vcode == fcode and (fsys is None or fsys == (vsys or "")):
                return True
    return False
