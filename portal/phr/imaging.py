"""Imaging studies (ImagingStudy): what was imaged, how, when, and the report when the clinic
linked one (a DiagnosticReport whose `imagingStudy` names the study)."""

from __future__ import annotations

from dataclasses import dataclass

from portal.models import FhirRecord
from portal.phr import facts, merge
from portal.phr.records import Page, Records, Row
from portal.phr.words import concept_text, date_text

ELEMENTS = ("started", "modality", "series", "description", "numberOfInstances", "procedureCode")
REPORT_ELEMENTS = ("imagingStudy", "code", "conclusion", "conclusionCode", "effectiveDateTime")


@dataclass(frozen=True)
class Study:
    id: int
    date: str | None
    what: str  # the description, else the procedure, else the modality
    modalities: tuple[str, ...]
    body_sites: tuple[str, ...]
    images: int | None
    report: str | None  # the linked report's conclusion (or its name)
    source: str
    also: tuple[str, ...] = ()  # other sources that sent the same study
    merged: tuple[int, ...] = ()  # the records folded into this item (to split them again)
    apart: tuple[int, ...] = ()  # records the patient said are not this one (to join again)


def studies(records: Records, page: int = 1, size: int = 25) -> Page[Study]:
    """Imaging studies, newest first, each with the report linked to it; one study sent by
    several sources (same identifier, else same kind at the same moment) once."""
    found = _stored(records)
    number = min(max(1, page), max(1, -(-found.total // size)))
    chosen = found.slice((number - 1) * size, number * size)
    report = {e.ids[0]: e.data for e in chosen}
    shown = merge.read(records, ["imaging"], chosen, ELEMENTS)
    items = [merge.marked(records, f, _study(records, f.row, report.get(f.row.id))) for f in shown]
    return Page(items, number, size, found.total)


def _stored(records: Records) -> facts.Folded:
    """The studies folded, each with what its linked report says, when the record changed
    (portal.phr.facts): a page reads only its studies, not every report."""

    def compute() -> list[facts.Entry]:
        rows = records.rows(["imaging"], elements=merge.KEY_ELEMENTS)
        found = merge.fold(records, rows, same=merge.same_moment)
        reports = _reports(records, [f.row for f in found])
        return merge.entries(found, lambda f: reports.get((f.row.connection_id, f.row.ref)))

    return facts.folded(records, "imaging", compute)


# A report that names imaging studies.
WITH_STUDIES = FhirRecord.raw["imagingStudy"].as_string().is_not(None)


def _reports(records: Records, studies: list[Row]) -> dict[tuple[int, str], str]:
    """(connection, `ImagingStudy/id`) -> what the report linked to it concludes."""
    if not studies or not records.may_see("reports"):
        return {}
    wanted = {(s.connection_id, s.ref) for s in studies}
    found: dict[tuple[int, str], str] = {}
    for report in records.rows(["reports"], where=[WITH_STUDIES], elements=REPORT_ELEMENTS):
        for link in report.raw.get("imagingStudy") or []:
            key = (
                report.connection_id,
                str(link.get("reference") if isinstance(link, dict) else ""),
            )
            if key in wanted and key not in found:
                found[key] = (
                    report.raw.get("conclusion")
                    or concept_text((report.raw.get("conclusionCode") or [None])[0])
                    or concept_text(report.raw.get("code"))
                    or "A report is on record"
                )
    return found


def _study(records: Records, row: Row, report: str | None) -> Study:
    raw = row.raw
    series = [s for s in raw.get("series") or [] if isinstance(s, dict)]
    modalities = [_coding_text(m) for m in raw.get("modality") or []]
    modalities += [_coding_text(s.get("modality")) for s in series]
    sites = [_coding_text(s.get("bodySite")) for s in series]
    procedures = [concept_text(p) for p in raw.get("procedureCode") or []]
    kinds = tuple(dict.fromkeys(m for m in modalities if m))
    images = raw.get("numberOfInstances")
    return Study(
        id=row.id,
        date=date_text(raw.get("started")),
        what=str(
            raw.get("description")
            or next((p for p in procedures if p), None)
            or (kinds[0] if kinds else "Imaging study")
        ),
        modalities=kinds,
        body_sites=tuple(dict.fromkeys(s for s in sites if s)),
        images=images if isinstance(images, int) and not isinstance(images, bool) else None,
        report=report,
        source=records.source(row),
    )


def _coding_text(value: object) -> str | None:
    """A Coding (ImagingStudy's modality and body site are Codings, not CodeableConcepts)."""
    if not isinstance(value, dict):
        return None
    text = value.get("display") or value.get("code")
    return str(text) if text else None
