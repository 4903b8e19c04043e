"""Who may do what: scope permissions, the patient compartment, category-granular grants.

Load, then check: a resource of another patient is "not found" (its existence is not
revealed); a type or category outside the token's grants is "forbidden".
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from portal.sandbox.fhir.registry import ResourceType
from portal.sandbox.fhir.search import SearchQuery, token_clause, where_clauses
from portal.sandbox.models import FhirResource, Token
from portal.sandbox.outcome import FhirError
from portal.sandbox.scopes import Access, TokenFilter

PERMISSION_NAMES = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


@dataclass(frozen=True)
class Caller:
    """The holder of an access token: what its scopes grant and whose record it may see."""

    access: Access
    patient_id: str | None

    @classmethod
    def from_token(cls, token: Token) -> Caller:
        # A token without launch context still belongs to a patient's own login.
        return cls(Access(token.scope), token.patient_id or token.user.patient_id)

    def require(self, rtype: ResourceType, permission: str) -> None:
        """403 unless some scope grants `permission` on this type."""
        if not self.access.can(rtype.name, permission):
            raise FhirError(
                403,
                f"The access token grants no {PERMISSION_NAMES[permission]} access to {rtype.name}",
            )

    def compartment(self, rtype: ResourceType) -> str | None:
        """The patient whose compartment limits this type (None: not a compartment type)."""
        if not rtype.compartment:
            return None
        if self.patient_id is None:
            raise FhirError(403, "The access token has no patient context")
        return self.patient_id

    def restrictions(
        self, rtype: ResourceType, permission: str
    ) -> dict[str, list[TokenFilter]] | None:
        """Token filters that category-granular grants (v2 `?category=...`) impose."""
        return self.access.restrictions(rtype.name, permission)


def search_clauses(caller: Caller, query: SearchQuery) -> list[ColumnElement[bool]]:
    """Authorize a search and return its SQL filters, narrowed to what the caller may see."""
    caller.require(query.resource_type, "s")
    return scoped_clauses(caller, query, "s")


def scoped_clauses(
    caller: Caller, query: SearchQuery, permission: str
) -> list[ColumnElement[bool]]:
    """The query's filters within the caller's compartment and `permission` grants.

    Naming another patient, or a category the grants exclude, is a 403.
    """
    rtype = query.resource_type
    patient_id = caller.compartment(rtype)
    for ids in query.patients:
        if any(pid is None or pid != patient_id for pid in ids):
            raise FhirError(403, "The access token does not grant access to that patient")
    restrictions = caller.restrictions(rtype, permission)
    if restrictions:
        _check_requested_within(query, restrictions)
    return where_clauses(query, patient_id, restrictions)


def _check_requested_within(query: SearchQuery, restrictions: dict[str, list[TokenFilter]]) -> None:
    """A search naming a value the grant excludes is refused rather than silently emptied."""
    for param, requested in query.tokens:
        granted = restrictions.get(param)
        if granted is None:
            continue
        for value in requested:
            if not any(_overlaps(value, g) for g in granted):
                raise FhirError(403, f"The access token does not grant access to that {param}")


def _overlaps(a: TokenFilter, b: TokenFilter) -> bool:
    """Whether some coded value could match both token filters."""
    (asys, acode), (bsys, bcode) = a, b
    codes = not acode or not bcode or acode == bcode
    systems = asys is None or bsys is None or (asys or "") == (bsys or "")
    return codes and systems


def readable(session: Session, caller: Caller, rtype: ResourceType, rid: str) -> FhirResource:
    """The current version of a resource the caller may read, or a 403/404 FhirError."""
    caller.require(rtype, "r")
    row = session.scalar(
        sa.select(FhirResource).where(
            FhirResource.resource_type == rtype.name, FhirResource.resource_id == rid
        )
    )
    if row is None or (rtype.compartment and row.patient_id != caller.compartment(rtype)):
        raise FhirError(404, f"{rtype.name}/{rid} is not known")
    restrictions = caller.restrictions(rtype, "r")
    if restrictions:
        granted = session.scalar(
            sa.select(FhirResource.pk).where(
                FhirResource.pk == row.pk,
                *(token_clause(p, f) for p, f in restrictions.items()),
            )
        )
        if granted is None:
            raise FhirError(403, f"The access token does not grant access to this {rtype.name}")
    return row
