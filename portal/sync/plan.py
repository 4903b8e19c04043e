"""Which FHIR requests a sync makes, from the GRANTED scope (never the requested one).

Patient: read by id. Observation: one search per category (only the granted ones when the
grant is category-restricted). Other patient types: one patient search (per granted
category when restricted). Types not granted are skipped. Practitioner, Organization and
Medication are not searched by patient; the engine reads the ones records refer to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from portal.smart import scopes

OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
OBSERVATION_CATEGORIES = (
    "laboratory",
    "vital-signs",
    "social-history",
    "survey",
    "exam",
    "imaging",
    "procedure",
    "activity",
)
REFERENCED_TYPES = ("Practitioner", "Organization", "Medication")
LONG_SEARCHES = (
    "Observation:laboratory",
    "Observation:vital-signs",
    "Encounter",
    "DiagnosticReport",
)
# Extra parameters US Core asks for (MedicationRequest: orders and the patient's own list).
TYPE_PARAMS: dict[str, tuple[tuple[str, str], ...]] = {
    "MedicationRequest": (("intent", "order,plan"),),
}
OTHER_OBSERVATIONS = "observations"  # progress key of Observation categories without a section
OTHER_NAMES = {OTHER_OBSERVATIONS: "other observations"}  # progress keys that are no section


@dataclass(frozen=True)
class Search:
    """One planned request chain: a read by id, or a search whose pages are all followed."""

    key: str  # unique within a run, e.g. "Observation:laboratory"
    resource_type: str
    params: tuple[tuple[str, str], ...] = ()
    sections: tuple[str, ...] = ()
    read_id: str | None = None
    # records: store what it finds | total: only count (Observations' completeness check) |
    # remainder: Observations no category search found | reference: resources records cite
    purpose: str = "records"

    @property
    def label(self) -> str:
        """Plain words for messages: the section names (never a FHIR type's name)."""
        names = [
            scopes.SECTION_NAMES.get(s, OTHER_NAMES.get(s, "other records")) for s in self.sections
        ]
        return " and ".join(names) if names else "other records"


def plan(
    granted_scope: str,
    patient_id: str,
    *,
    since: datetime | None = None,
    page_size: int | None = None,
) -> list[Search]:
    """The searches of one sync; `since` fetches only what changed after it."""
    grants = scopes.parse_grants(granted_scope)
    changed = _changed_since(since)
    common = [*changed, *_page_size(page_size)]
    searches: list[Search] = []
    if scopes.can_read(grants, "Patient"):
        searches.append(Search("Patient", "Patient", (), ("patient",), read_id=patient_id))
    elif scopes.can_search(grants, "Patient"):
        searches.append(Search("Patient", "Patient", (("_id", patient_id),), ("patient",)))
    for rtype in scopes.resource_types():
        if rtype == "Patient" or rtype in REFERENCED_TYPES:
            continue
        categories = scopes.granted_categories(grants, rtype)
        if categories is not None and not categories:
            continue  # not granted
        base = [("patient", patient_id), *TYPE_PARAMS.get(rtype, ())]
        if rtype == "Observation":
            wanted = OBSERVATION_CATEGORIES if categories is None else sorted(categories)
            for cat in wanted:
                value = f"{OBSERVATION_CATEGORY_SYSTEM}|{cat}"
                params = (*base, ("category", value), *common)
                searches.append(Search(f"{rtype}:{cat}", rtype, params, sections_for(rtype, cat)))
            if categories is None:
                # Observations of no listed category would be missed: count them all, so the
                # sync can fetch the remainder when the category searches found fewer.
                count = (*base, *changed, ("_summary", "count"), ("_count", "0"))
                searches.append(
                    Search(f"{rtype}:total", rtype, count, (OTHER_OBSERVATIONS,), purpose="total")
                )
        elif categories is None:
            searches.append(Search(rtype, rtype, (*base, *common), sections_for(rtype, None)))
        else:
            for cat in sorted(categories):
                params = (*base, ("category", cat), *common)
                searches.append(Search(f"{rtype}:{cat}", rtype, params, sections_for(rtype, cat)))
    return sorted(searches, key=_start_early, reverse=True)


def _start_early(search: Search) -> bool:
    """Whether a search usually runs to many pages, or its records cite clinicians and
    organizations to fetch next: such chains can only be followed a page at a time, so they
    start at once while the short searches fill the other connections."""
    return search.key in LONG_SEARCHES or search.resource_type in LONG_SEARCHES


def remainder(patient_id: str, *, since: datetime | None, page_size: int | None) -> Search:
    """Every Observation of the patient: run when the category searches missed some."""
    params = (("patient", patient_id), *_changed_since(since), *_page_size(page_size))
    return Search(
        "Observation:other", "Observation", params, (OTHER_OBSERVATIONS,), purpose="remainder"
    )


def _changed_since(since: datetime | None) -> list[tuple[str, str]]:
    return [("_lastUpdated", f"gt{fhir_instant(since)}")] if since is not None else []


def _page_size(page_size: int | None) -> list[tuple[str, str]]:
    return [("_count", str(page_size))] if page_size else []


def referenced_types(granted_scope: str) -> dict[str, str]:
    """Referenced types the grant lets us fetch -> "search" (by _id batches) or "read"."""
    grants = scopes.parse_grants(granted_scope)
    out: dict[str, str] = {}
    for rtype in REFERENCED_TYPES:
        if scopes.can_search(grants, rtype):
            out[rtype] = "search"
        elif scopes.can_read(grants, rtype):
            out[rtype] = "read"
    return out


def sections_for(resource_type: str, category: str | None) -> tuple[str, ...]:
    """The records sections (progress keys) a search fills."""
    found = [
        section
        for section, sources in scopes.SECTION_SOURCES.items()
        if (resource_type, category) in sources
        or (resource_type != "Observation" and (resource_type, None) in sources)
    ]
    if found:
        return tuple(found)
    return (OTHER_OBSERVATIONS,) if resource_type == "Observation" else (resource_type,)


def fhir_instant(when: datetime) -> str:
    """An instant as FHIR writes it: UTC with Z and microseconds (no skipped updates)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
