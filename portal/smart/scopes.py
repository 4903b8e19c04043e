"""Which SMART scopes the portal asks for, and what a granted scope lets it show.

The portal asks only for what it uses: read access to the US Core types behind each records
section, in v2 syntax (`patient/Observation.rs`) when the EHR advertises `permission-v2`, else
v1 (`patient/Observation.read`); read by id (`patient/Binary.r`) for the files documents
only link to; and create (`patient/Observation.c`, v1 `.write`) for the types of the patient's
own entries, which the patient may choose to send to a clinic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Records sections -> the (FHIR type, category code or None) searches behind them.
SECTION_SOURCES: dict[str, tuple[tuple[str, str | None], ...]] = {
    "patient": (("Patient", None),),
    "problems": (("Condition", None),),
    "medications": (("MedicationRequest", None), ("Medication", None)),
    "allergies": (("AllergyIntolerance", None),),
    "immunizations": (("Immunization", None),),
    "labs": (("Observation", "laboratory"), ("DiagnosticReport", None)),
    "vitals": (("Observation", "vital-signs"),),
    "social": (("Observation", "social-history"),),
    "surveys": (("Observation", "survey"),),
    "visits": (("Encounter", None),),
    "procedures": (("Procedure", None),),
    "documents": (("DocumentReference", None), ("DiagnosticReport", None)),
    "imaging": (("ImagingStudy", None),),
    "careplans": (("CarePlan", None), ("Goal", None)),
    "careteam": (("CareTeam", None),),
    "coverage": (("Coverage", None),),
    "claims": (("Claim", None), ("ExplanationOfBenefit", None)),
    "directory": (("Practitioner", None), ("Organization", None)),
}
# What a patient reads in the page when a section was not shared.
SECTION_NAMES = {
    "patient": "your demographics",
    "problems": "health problems",
    "medications": "medications",
    "allergies": "allergies",
    "immunizations": "immunizations",
    "labs": "lab results",
    "vitals": "vital signs",
    "social": "social history",
    "surveys": "questionnaires",
    "visits": "visits",
    "procedures": "procedures",
    "documents": "documents",
    "imaging": "imaging studies",
    "careplans": "care plans and goals",
    "careteam": "your care team",
    "coverage": "insurance coverage",
    "claims": "bills and claims",
    "directory": "clinician and clinic details",
}
IDENTITY = ("openid", "fhirUser")
# Read by id only, never searched: the files documents link to (`attachment.url` = Binary/123).
READ_ONLY_TYPES = ("Binary",)
# The types of the patient's own entries (portal.phr.entries): what write-back creates.
WRITE_TYPES = (
    "Observation",
    "Condition",
    "AllergyIntolerance",
    "MedicationRequest",
    "Immunization",
    "DocumentReference",
)
_RESOURCE_SCOPE = re.compile(
    r"^(?P<ctx>patient|user)/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<perm>[a-z*]+)(?:\?(?P<q>.+))?$"
)
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}


def resource_types() -> list[str]:
    """Every FHIR type the records pages read, each once, in a stable order."""
    seen: dict[str, None] = {}
    for sources in SECTION_SOURCES.values():
        for rtype, _ in sources:
            seen.setdefault(rtype)
    return list(seen)


def requested_scope(capabilities: list[str], *, ehr_launch: bool) -> str:
    """The scope string for an authorization request to an EHR with these capabilities."""
    v2 = "permission-v2" in capabilities or "permission-v1" not in capabilities
    suffix = ".rs" if v2 else ".read"
    parts = [*IDENTITY, "launch" if ehr_launch else "launch/patient"]
    parts.append("online_access" if ehr_launch else "offline_access")
    parts += [f"patient/{t}{suffix}" for t in resource_types()]
    parts += [f"patient/{t}{'.r' if v2 else '.read'}" for t in READ_ONLY_TYPES]
    parts += [f"patient/{t}{'.c' if v2 else '.write'}" for t in WRITE_TYPES]
    return " ".join(parts)


@dataclass(frozen=True)
class Grant:
    resource_type: str
    can_read: bool
    can_search: bool
    categories: frozenset[str] | None  # None: every category
    can_create: bool = False


def parse_grants(scope: str) -> list[Grant]:
    """Read/search grants in a (granted) scope string, v1 and v2."""
    grants = []
    for item in scope.split():
        m = _RESOURCE_SCOPE.match(item)
        if not m:
            continue
        perm = _V1.get(m["perm"], m["perm"])
        if not set(perm) <= set("cruds"):
            continue
        cats: frozenset[str] | None = None
        if m["q"]:
            values = [
                v.split("|")[-1]
                for k, vs in (p.split("=", 1) for p in m["q"].split("&") if "=" in p)
                if k == "category"
                for v in vs.split(",")
            ]
            cats = frozenset(values) if values else None
        grants.append(Grant(m["type"], "r" in perm, "s" in perm, cats, "c" in perm))
    return grants


def can_search(grants: list[Grant], resource_type: str, category: str | None = None) -> bool:
    """Whether the grants allow searching this type (and category, when given)."""
    for g in grants:
        if g.resource_type not in ("*", resource_type) or not g.can_search:
            continue
        if g.categories is None or (category is not None and category in g.categories):
            return True
    return False


def granted_sections(scope: str) -> set[str]:
    """Records sections the granted scope lets the portal fill (any of their sources)."""
    grants = parse_grants(scope)
    return {
        section
        for section, sources in SECTION_SOURCES.items()
        if any(can_search(grants, rtype, cat) for rtype, cat in sources)
    }


def missing_sections(scope: str) -> set[str]:
    """Records sections the EHR or the patient did not share."""
    return set(SECTION_SOURCES) - granted_sections(scope)


def can_read(grants: list[Grant], resource_type: str) -> bool:
    """Whether the grants allow reading this type by id (any category restriction aside)."""
    return any(g.resource_type in ("*", resource_type) and g.can_read for g in grants)


def granted_categories(grants: list[Grant], resource_type: str) -> frozenset[str] | None:
    """Categories of this type the grants allow searching; None: every category."""
    found: set[str] = set()
    for g in grants:
        if g.resource_type not in ("*", resource_type) or not g.can_search:
            continue
        if g.categories is None:
            return None
        found |= g.categories
    return frozenset(found)


def can_create(scope: str, resource_type: str, category: str | None = None) -> bool:
    """Whether a granted scope lets the portal create this type (in this category)."""
    for g in parse_grants(scope):
        if g.resource_type not in ("*", resource_type) or not g.can_create:
            continue
        if g.categories is None or (category is not None and category in g.categories):
            return True
    return False
