"""Lab panels: a report (DiagnosticReport) that lists its results (`result`) is one panel, a
complete blood count or a metabolic panel, with its results beneath it.

Each result stays a result of its own test too (portal.phr.labs); a panel only groups them
as the lab sent them.
"""

from __future__ import annotations

from dataclasses import dataclass

from portal.models import FhirRecord
from portal.phr import facts, labs, merge
from portal.phr.records import Page, Records, Row, ref_key
from portal.phr.words import concept_text, date_text, lab_name, status_words, tidy, when_text

PANELS_PER_PAGE = 10
LATEST_ON_LABS = 3  # panels shown above the tests on the lab results page
# A report that lists results (`result` is there and not empty).
WITH_RESULTS = FhirRecord.raw["result"].as_string().is_not(None)


@dataclass(frozen=True)
class PanelResult:
    name: str
    key: str  # the test's key on the lab results pages (portal.phr.labs.test_key)
    result: labs.LabResult


@dataclass(frozen=True)
class Panel:
    id: int
    name: str
    date: str | None
    status: str | None  # said only when the report is not final
    conclusion: str | None
    results: tuple[PanelResult, ...]
    missing: int  # results the report lists that this record does not hold (or may not show)
    source: str
    also: tuple[str, ...] = ()  # the other sources that sent this panel

    @property
    def flagged(self) -> int:
        return sum(1 for r in self.results if r.result.flag)

    @property
    def anchor(self) -> str:
        return f"panel-{self.id}"


def panels(records: Records, page: int = 1, size: int = PANELS_PER_PAGE) -> Page[Panel]:
    """One page of panels, newest first, each with its results."""
    if not records.may_see("labs"):
        return Page([], 1, size, 0)
    found = _stored(records)
    number = min(max(1, page), max(1, -(-found.total // size)))
    start = (number - 1) * size
    shown = merge.read(records, ["reports"], found.slice(start, start + size), None)
    also = {f.row.id: f.also(records) for f in shown if f.others}
    return Page(panels_of(records, [f.row for f in shown], also), number, size, found.total)


def _stored(records: Records) -> facts.Folded:
    """The panels, each once: one report both clinics sent (by identifier, else the same
    panel at the same moment) is one panel, stored folded (portal.phr.facts)."""
    return merge.section_facts(
        records, "panels", ["reports"], where=[WITH_RESULTS], same=merge.same_moment
    )


def latest(records: Records, limit: int = LATEST_ON_LABS) -> Page[Panel]:
    """The newest few panels (and how many there are), for the lab results page."""
    return panels(records, 1, limit)


def panels_of(
    records: Records, reports: list[Row], also: dict[int, tuple[str, ...]] | None = None
) -> list[Panel]:
    """Panels of these report rows (full rows), their results read in one query; `also`:
    the other sources that sent each one."""
    wanted = [
        (row.connection_id, ref_key(ref))
        for row in reports
        for ref in row.raw.get("result") or []
        if isinstance(ref, dict)
    ]
    found = {
        key: row
        for key, row in records.resolve(wanted).items()
        if row.category in labs.RESULTS or row.resource_type == "Observation"
    }
    return [_panel(records, row, found, (also or {}).get(row.id, ())) for row in reports]


def _panel(
    records: Records, row: Row, found: dict[tuple[int, str], Row], also: tuple[str, ...]
) -> Panel:
    raw = row.raw
    results = []
    listed = [r for r in raw.get("result") or [] if isinstance(r, dict)]
    for ref in listed:
        key = ref_key(ref)
        result_row = found.get((row.connection_id, key)) if key else None
        if result_row is None or not records.may_see(result_row.category):
            continue
        name = lab_name(
            tidy(result_row.display) or concept_text(result_row.raw.get("code")) or "Test"
        )
        results.append(
            PanelResult(
                name=name,
                key=labs.test_key(result_row.code, result_row.display),
                result=labs.result_of(records, result_row),
            )
        )
    status = row.status if row.status not in (None, "final") else None
    return Panel(
        id=row.id,
        name=lab_name(concept_text(raw.get("code")) or tidy(row.display) or "Lab panel"),
        date=when_text(raw, "effectiveDateTime", "effectivePeriod", "issued")
        or date_text(row.effective_at),
        status=status_words(status),
        conclusion=str(raw["conclusion"]) if raw.get("conclusion") else None,
        results=tuple(results),
        missing=len(listed) - len(results),
        source=records.source(row),
        also=also,
    )
