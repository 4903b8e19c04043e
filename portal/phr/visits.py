"""Visits: a timeline of encounters, each with what happened there."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from portal.models import FhirRecord
from portal.phr import ranges
from portal.phr.labs import flag_of
from portal.phr.merge import Fact, listing, marked, same_moment, section_facts
from portal.phr.names import category_text, medicine_name
from portal.phr.records import Page, Records, Row, ref_key
from portal.phr.vitals import BP_PANELS, blood_pressure_texts, shown_text
from portal.phr.words import (
    absent_reason,
    concept_text,
    date_text,
    first_code,
    lab_name,
    parse_date,
    status_words,
    tidy,
    value_text,
)

VISITS_PER_PAGE = 10
ITEM_ELEMENTS = (
    "encounter",
    "result",
    "code",
    "vaccineCode",
    "medicationCodeableConcept",
    "category",
    "effectiveDateTime",
    "valueQuantity",
    "valueCodeableConcept",
    "valueString",
    "valueBoolean",
    "valueInteger",
    "valueRange",
    "valueRatio",
    "dataAbsentReason",
    "interpretation",
    "referenceRange",
    "component",
)
CLASS_WORDS = {
    "AMB": "Office visit",
    "EMER": "Emergency visit",
    "IMP": "Hospital stay",
    "ACUTE": "Hospital stay",
    "NONAC": "Hospital stay",
    "OBSENC": "Observation stay",
    "PRENC": "Pre-admission visit",
    "SS": "Day procedure",
    "HH": "Home visit",
    "FLD": "Visit outside the clinic",
    "VR": "Virtual visit",
}
# What a visit's linked records are called on the page, in display order.
CONTENT_CATEGORIES = (
    ("diagnoses", ("problems", "diagnoses")),
    ("procedures", ("procedures",)),
    ("immunizations", ("immunizations",)),
    ("medications", ("medications",)),
    ("results", ("labs", "vitals", "observations", "social", "surveys")),
    ("careplans", ("careplans",)),
    ("reports", ("reports",)),
)


@dataclass(frozen=True)
class Happened:
    """One thing recorded at a visit."""

    what: str
    detail: str | None = None
    flagged: bool = False
    parts: tuple[Happened, ...] = ()  # a panel's results, beneath it


@dataclass(frozen=True)
class Visit:
    id: int
    title: str
    kind: str | None
    date: str | None
    end: str | None
    at: datetime | None
    status: str | None
    where: str | None
    clinicians: str | None
    reason: str | None
    diagnoses: tuple[Happened, ...]
    procedures: tuple[Happened, ...]
    immunizations: tuple[Happened, ...]
    medications: tuple[Happened, ...]
    results: tuple[Happened, ...]
    careplans: tuple[Happened, ...]
    reports: tuple[Happened, ...]
    source: str
    also: tuple[str, ...] = ()  # other sources that report the same visit
    merged: tuple[int, ...] = ()  # the records folded into this item (to split them again)
    apart: tuple[int, ...] = ()  # records the patient said are not this one (to join again)

    @property
    def empty(self) -> bool:
        return not (
            self.diagnoses
            or self.procedures
            or self.immunizations
            or self.medications
            or self.results
            or self.careplans
            or self.reports
        )


def visits(records: Records, page: int = 1, size: int = VISITS_PER_PAGE) -> Page[Visit]:
    """One page of visits, newest first, with the records that point at each; one visit
    reported by several sources (same type, same moment) once, and counted once."""
    return listing(
        records,
        ["visits"],
        page,
        size,
        lambda facts: _visits(records, facts),
        stored="visits",
        same=same_moment,
    )


def _visits(records: Records, facts: list[Fact]) -> list[Visit]:
    rows = [f.row for f in facts]
    if not rows:
        return []
    by_visit: dict[tuple[int, str], list[Row]] = {}
    for row in _linked(records, rows):
        key = ref_key(row.raw.get("encounter"))
        if key:
            by_visit.setdefault((row.connection_id, key), []).append(row)
    names = records.names(
        rows, "participant.individual", "serviceProvider", "location.location", "reasonReference"
    )
    return [
        marked(
            records,
            fact,
            _visit(
                records, fact.row, by_visit.get((fact.row.connection_id, fact.row.ref), []), names
            ),
        )
        for fact in facts
    ]


def page_of(records: Records, visit: Row, size: int = VISITS_PER_PAGE) -> int:
    """The page of `visits` that shows this visit (its fact's place, newest first)."""
    found = section_facts(records, "visits", ["visits"], same=same_moment)  # as `visits` lists them
    place = next((i for i, e in enumerate(found.all()) if visit.id in e.ids), 0)
    return place // size + 1


def _linked(records: Records, visits: list[Row]) -> list[Row]:
    """Records that point at these visits, oldest first (by the indexed reference)."""
    refs = sorted({row.ref for row in visits})
    categories = [c for _, cats in CONTENT_CATEGORIES for c in cats]
    found = records.rows(
        categories, where=[FhirRecord.encounter_ref.in_(refs)], elements=ITEM_ELEMENTS
    )
    found.sort(key=lambda r: (r.effective_at is None, r.effective_at or datetime.min, r.id))
    return found


def _visit(
    records: Records, row: Row, linked: list[Row], names: dict[tuple[int, str], str]
) -> Visit:
    raw = row.raw
    period = raw.get("period") or {}
    start, end = period.get("start"), period.get("end")
    start_day, end_day = parse_date(start), parse_date(end)
    clinicians = [
        records.ref_name(names, row, p.get("individual"))
        for p in raw.get("participant") or []
        if isinstance(p, dict) and p.get("individual")
    ]
    places = [
        records.ref_name(names, row, loc.get("location"))
        for loc in raw.get("location") or []
        if isinstance(loc, dict) and loc.get("location")
    ]
    if raw.get("serviceProvider"):
        places.append(records.ref_name(names, row, raw["serviceProvider"]))
    reasons = [concept_text(x) for x in raw.get("reasonCode") or []]
    reasons += [records.ref_name(names, row, x) for x in raw.get("reasonReference") or []]
    kind = CLASS_WORDS.get(first_code(raw.get("class")) or "")
    groups: dict[str, list[Happened]] = {name: [] for name, _ in CONTENT_CATEGORIES}
    category_group = {c: name for name, cats in CONTENT_CATEGORIES for c in cats}
    bp_rows = [r for r in linked if r.code in BP_PANELS]
    by_ref = {r.ref: r for r in linked}
    who = ranges.person(records)
    for item in linked:
        group = category_group[item.category]
        if item.code in BP_PANELS:
            continue
        happened = _happened(item, who)
        if item.resource_type == "DiagnosticReport":
            parts = [by_ref.get(ref_key(x) or "") for x in item.raw.get("result") or []]
            happened = replace(happened, parts=tuple(_happened(p, who) for p in parts if p))
        groups[group].append(happened)
    for text in blood_pressure_texts(bp_rows):
        groups["results"].append(Happened("Blood pressure", text))
    return Visit(
        id=row.id,
        title=concept_text(raw.get("type")) or kind or "Visit",
        kind=kind,
        date=date_text(start) or date_text(row.effective_at),
        end=date_text(end) if end_day and start_day and end_day != start_day else None,
        at=row.effective_at,
        status=status_words(row.status) if row.status not in ("finished", None) else None,
        where=", ".join(dict.fromkeys(p for p in places if p)) or None,
        clinicians=", ".join(dict.fromkeys(c for c in clinicians if c)) or None,
        reason=", ".join(r for r in reasons if r) or None,
        source=records.source(row),
        diagnoses=tuple(groups["diagnoses"]),
        procedures=tuple(groups["procedures"]),
        immunizations=tuple(groups["immunizations"]),
        medications=tuple(groups["medications"]),
        results=tuple(groups["results"]),
        careplans=tuple(groups["careplans"]),
        reports=tuple(groups["reports"]),
    )


def _happened(row: Row, who: ranges.Person) -> Happened:
    raw: dict[str, Any] = row.raw
    what = (
        concept_text(raw.get("code"))
        or concept_text(raw.get("vaccineCode"))
        or medicine_name(concept_text(raw.get("medicationCodeableConcept")))
        or (category_text(raw.get("category")) if row.category == "careplans" else None)
        or tidy(row.display)
        or "Unnamed record"
    )
    detail = None
    flagged = False
    if row.resource_type == "Observation":
        what = lab_name(what)
        detail = shown_text(row) or value_text(raw) or absent_reason(raw)  # the patient's units
        flag = flag_of(row, who)
        if flag and detail:
            detail = f"{detail} ({flag.words.lower()})"
        flagged = flag is not None
    elif row.resource_type == "MedicationRequest":
        detail = status_words(row.status)
    return Happened(what, detail, flagged)
