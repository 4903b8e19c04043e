"""Lab results, grouped by test, with flags, normal ranges, safe unit conversions and trends."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from portal.fhirjson import FhirDecimal
from portal.phr import facts, measures, merge, ranges, units
from portal.phr.about_tests import about
from portal.phr.charts import Chart, Measurement, line_chart
from portal.phr.merge import distinct
from portal.phr.ranges import FLAGS as FLAGS
from portal.phr.ranges import NORMAL as NORMAL
from portal.phr.ranges import Flag as Flag
from portal.phr.ranges import unit_of as unit_of
from portal.phr.records import Page, Records, Row
from portal.phr.words import (
    absent_reason,
    concept_text,
    date_text,
    lab_name,
    number,
    status_words,
    tidy,
    unit_words,
    value_text,
)

# What the lab pages read of each result (the rest of the resource stays in the database).
ELEMENTS = (
    "code",
    "effectiveDateTime",
    "effectivePeriod",
    "issued",
    "valueQuantity",
    "valueCodeableConcept",
    "valueString",
    "valueBoolean",
    "valueInteger",
    "valueRange",
    "valueRatio",
    "valueDateTime",
    "valuePeriod",
    "valueTime",
    "dataAbsentReason",
    "referenceRange",
    "interpretation",
    "note",
)
# What the results pages list: lab results, and the measurements filed elsewhere or nowhere
# (an ejection fraction under `imaging`, a polyp's size under `procedure`, Synthea's misspelled
# `vital-sign`): a patient looks for them among their results, not only inside a visit.
RESULTS = ("labs", "observations")
TESTS_PER_PAGE = 6
CHART_POINTS = 30  # the overview charts each test's latest results; its own page more
RECENT_IN_CARD = 3
RESULTS_PER_PAGE = 50  # a test's own page lists its results a page at a time
HISTORY_CHARTED = 200  # and charts its latest this many
# What working out a test's counts, flags and chart reads of each result (the rest when a
# page shows them).
STORED_ELEMENTS = (
    *merge.VALUE_ELEMENTS,
    "code",
    "effectiveDateTime",
    "effectivePeriod",
    "issued",
    "referenceRange",
    "interpretation",
)


@dataclass(frozen=True)
class LabResult:
    id: int
    at: datetime | None
    date: str | None
    value: float | None  # in the series' unit
    unit: str | None
    text: str  # "5.4 mmol/L", "Positive", "Not recorded (asked but unknown)"
    reported: str | None  # the value as the lab sent it, when converted
    flag: Flag | None
    range: str | None  # normal range in words, in the series' unit
    low: float | None
    high: float | None
    absent: bool
    status: str | None  # said only when the result is not final
    note: str | None
    source: str
    also: tuple[str, ...] = ()  # other sources that sent this same result
    range_source: str | None = None  # whose range it is, when not the clinic's
    no_range: str | None = None  # when no range is known: that, in words
    about: str | None = None  # what the test measures, in one plain line


@dataclass(frozen=True)
class LabSeries:
    unit: str | None
    unit_label: str
    count: int
    chart: Chart | None


@dataclass(frozen=True)
class LabTest:
    key: str
    name: str
    count: int
    charted: int  # how many of the latest results the chart shows
    latest: LabResult
    series: tuple[LabSeries, ...]  # numeric results, one series per kind of unit
    results: tuple[LabResult, ...]  # newest first: every one, or the latest few on the overview
    sources: tuple[str, ...]
    flagged: int
    about: str | None = None  # what the test measures, in one plain line

    @property
    def recent(self) -> tuple[LabResult, ...]:
        return self.results[:RECENT_IN_CARD]

    @property
    def anchor(self) -> str:
        return slug(self.key)


@dataclass(frozen=True)
class LabOverview:
    tests: Page[LabTest]
    total_results: int


@dataclass(frozen=True)
class _Group:
    """A test as stored (portal.phr.facts): JSON values only."""

    key: str
    count: int  # results, each once
    latest: str | None  # ISO moment of the latest
    start: int  # where its results start in the stored results
    flagged: int  # results outside the usual range
    chart: dict[str, Any] | None = None  # its latest CHART_POINTS, charted (a _Chart as JSON)


@dataclass(frozen=True)
class TestHistory:
    """A test's page: the test (its chart, latest, counts) and one page of its results."""

    test: LabTest
    page: Page[LabResult]


def test_key(code: str | None, display: str | None) -> str:
    """What identifies a test in URLs: its (LOINC) code, else its name."""
    return code if code else f"name:{display or ''}"


def overview(records: Records, page: int = 1, size: int = TESTS_PER_PAGE) -> LabOverview:
    """One page of tests (most recently done first), each with its results and trend."""
    tests, results = _stored(records)
    pages = max(1, -(-tests.total // size))
    page = min(max(1, page), pages)
    chosen = [_Group(**e.data) for e in tests.slice((page - 1) * size, page * size)]
    # The charts are stored with the tests; only the few results put into words are read,
    # in two queries for the whole page.
    spans = [(g.start, g.start + min(g.count, RECENT_IN_CARD)) for g in chosen]
    slices = results.slices(spans)
    read = {
        f.ids[0]: f for f in merge.read(records, RESULTS, [e for s in slices for e in s], ELEMENTS)
    }
    built = []
    for g, entries in zip(chosen, slices, strict=True):
        rows = [r for e in entries if (f := read.get(e.ids[0])) for r in f.rows]
        if rows and g.chart is not None:
            built.append(_charted_test(records, g, _Chart.of(g.chart), rows))
    return LabOverview(Page(built, page, size, tests.total), results.total)


def _charted_test(records: Records, group: _Group, chart: _Chart, rows: list[Row]) -> LabTest:
    """A test of the overview: its latest results (rows) in words, under the chart of its
    latest CHART_POINTS stored with the test when the record changed."""
    rows, also = distinct(records, rows)
    return _test(
        records,
        group.key,
        rows,
        rows[:RECENT_IN_CARD],
        also,
        chart.series,
        total=group.count,
        charted=chart.charted,
        sources=chart.sources,
        flagged=chart.flagged,
        compact=True,
    )


def _stored(records: Records) -> tuple[facts.Folded, facts.Folded]:
    """The tests (one entry each: its key, how many results, the latest, where its results
    start in the results list, how many are flagged) and every result once, test after test
    and newest first within one: worked out together when the record changed, then stored
    (portal.phr.facts), so no page passes over every result."""
    worked: list[tuple[list[facts.Entry], list[facts.Entry]]] = []

    def work() -> tuple[list[facts.Entry], list[facts.Entry]]:
        if not worked:
            worked.append(_work_out(records))
        return worked[0]

    tests = facts.folded(records, "lab-tests", lambda: work()[0])
    results = facts.folded(records, "lab-results", lambda: work()[1])
    return tests, results


def _work_out(records: Records) -> tuple[list[facts.Entry], list[facts.Entry]]:
    by_key: dict[str, list[Row]] = {}
    for row in records.rows(RESULTS, elements=STORED_ELEMENTS):
        by_key.setdefault(test_key(row.code, row.display), []).append(row)
    who = ranges.person(records)
    found: list[tuple[_Group, list[merge.Fact]]] = []
    for key, rows in by_key.items():
        kept = merge.fold(records, rows, same=merge.reading_moment)
        dated = [f.row.effective_at for f in kept if f.row.effective_at is not None]
        flagged = sum(1 for f in kept if flag_of(f.row, who))
        latest = max(dated).isoformat() if dated else None
        charted = [f.row for f in kept[:CHART_POINTS]]
        chart = _Chart.worked_out(records, charted, who).json()
        found.append((_Group(key, len(kept), latest, 0, flagged, chart), kept))
    found.sort(key=lambda g: (g[0].latest is None, _sort_moment(g[0].latest)))
    tests: list[facts.Entry] = []
    results: list[facts.Entry] = []
    for group, kept in found:
        group = replace(group, start=len(results))
        tests.append(facts.Entry((kept[0].row.id,), data=asdict(group)))
        results += merge.entries(kept)
    return tests, results


def _sort_moment(moment: str | None) -> float:
    return -datetime.fromisoformat(moment).timestamp() if moment else 0.0


def _group(records: Records, key: str) -> _Group | None:
    tests, _ = _stored(records)
    found = tests.having("key", key)
    return _Group(**found[0].data) if found else None


def test_history(records: Records, key: str) -> LabTest | None:
    """A test with its newest page of results (see `history`)."""
    found = history(records, key)
    return found.test if found else None


def history(
    records: Records, key: str, page: int = 1, size: int = RESULTS_PER_PAGE
) -> TestHistory | None:
    """One test's results, a page at a time (newest first), under a chart of its latest
    HISTORY_CHARTED (None when this record has none)."""
    group = _group(records, key)
    if group is None:
        return None
    _, results = _stored(records)
    pages = max(1, -(-group.count // size))
    page = min(max(1, page), pages)
    shown = min(group.count, HISTORY_CHARTED)
    first, last = (page - 1) * size, min(page * size, group.count)
    charted = _rows(records, results.slice(group.start, group.start + shown))
    if not charted:
        return None
    if last <= shown:  # this page's results are charted: put into words with the chart
        test = build_test(records, key, charted, total=group.count, listed=slice(first, last))
        listed = test.results
    else:  # older than the chart: those in words alone
        test = build_test(records, key, charted, total=group.count, listed=slice(0, 0))
        rows = _rows(records, results.slice(group.start + first, group.start + last))
        listed = build_test(records, key, rows).results if rows else ()
    return TestHistory(
        replace(test, results=tuple(listed), flagged=group.flagged),
        Page(list(listed), page, size, group.count),
    )


def _rows(records: Records, chosen: list[facts.Entry]) -> list[Row]:
    return [r for f in merge.read(records, RESULTS, chosen, ELEMENTS) for r in f.rows]


def recent_results(records: Records, limit: int = 8) -> list[tuple[str, LabResult]]:
    """The latest lab results of any test, as reported: (test name, result); one result sent
    by several sources once, with the others in `also`."""
    # Each source gives a result at most one row: this many rows hold `limit` results.
    rows = records.rows(
        ["labs"], limit=limit * max(1, len(records.ids)), elements=(*ELEMENTS, "identifier")
    )
    rows, also = distinct(records, rows)
    return [
        (
            _name(row),
            _result(
                records,
                row,
                measures.lab_unit(row.code, own_unit(row)),
                convert=True,
                also=also,
            ),
        )
        for row in rows[:limit]
    ]


def result_of(records: Records, row: Row) -> LabResult:
    """One result (a full row) as reported, in words."""
    return _result(records, row, own_unit(row))


@dataclass(frozen=True)
class _Point:
    """A numeric result in its series' unit, before any words are made of it."""

    at: datetime | None
    date: str | None
    value: float
    flag: str | None  # its flag in words ("High"), when it has one
    low: float | None
    high: float | None

    def json(self) -> list[Any]:
        at = self.at.isoformat() if self.at else None
        return [at, self.date, _number_json(self.value), self.flag, self.low, self.high]

    @classmethod
    def of(cls, data: list[Any]) -> _Point:
        at, date, value, flag, low, high = data
        moment = datetime.fromisoformat(at) if at else None
        return cls(moment, date, _number_of(value), flag, low, high)


@dataclass(frozen=True)
class _Series:
    """A test's numeric results of one kind of unit (convertible into each other), charted in
    one unit."""

    kind: str
    unit: str | None
    count: int
    points: tuple[_Point, ...]


@dataclass(frozen=True)
class _Chart:
    """What a test's charts are drawn from: its latest results' points, as stored with the
    test (JSON) so the overview draws them without reading those results again."""

    series: tuple[_Series, ...]
    charted: int  # results charted (numeric or not)
    sources: tuple[str, ...]
    flagged: int

    @classmethod
    def worked_out(cls, records: Records, rows: list[Row], who: ranges.Person) -> _Chart:
        series = _series_of(rows, who)
        flagged = sum(1 for s in series for p in s.points if p.flag)
        flagged += sum(1 for r in rows if _kind(r) is None and _other_flag(r, who))
        sources = tuple(sorted({records.source(r) for r in rows}))
        return cls(series, len(rows), sources, flagged)

    def json(self) -> dict[str, Any]:
        return {
            "series": [
                {"kind": s.kind, "unit": s.unit, "points": [p.json() for p in s.points]}
                for s in self.series
            ],
            "charted": self.charted,
            "sources": list(self.sources),
            "flagged": self.flagged,
        }

    @classmethod
    def of(cls, data: dict[str, Any]) -> _Chart:
        series = tuple(
            _Series(s["kind"], s["unit"], len(s["points"]), tuple(map(_Point.of, s["points"])))
            for s in data.get("series", [])
        )
        return cls(series, data["charted"], tuple(data["sources"]), data["flagged"])


def _number_json(value: float) -> float | str:
    """A number for JSON: as the clinic wrote it (its digits, as text) when known."""
    return value.text if isinstance(value, FhirDecimal) else value


def _number_of(value: float | str) -> float:
    return FhirDecimal(value) if isinstance(value, str) else value


def build_test(
    records: Records,
    key: str,
    rows: list[Row],
    *,
    compact: bool = False,
    total: int | None = None,
    listed: slice = slice(None),
) -> LabTest:
    """A test's results (rows newest first) as series per kind of unit, with charts.

    `rows` are charted; `listed` of them (after folding) are put into words, or with
    `compact` only the latest few. `total` is how many results the test has when `rows`
    are only the latest of them.
    """
    rows, also = distinct(records, rows)  # one result sent by two clinics: once
    chart = _Chart.worked_out(records, rows, ranges.person(records))
    return _test(
        records,
        key,
        rows,
        rows[:RECENT_IN_CARD] if compact else rows[listed],
        also,
        chart.series,
        total=total if total is not None else len(rows),
        charted=chart.charted,
        sources=chart.sources,
        flagged=chart.flagged,
        compact=compact,
    )


def _test(
    records: Records,
    key: str,
    rows: list[Row],
    worded: list[Row],
    also: dict[int, tuple[str, ...]],
    series: tuple[_Series, ...],
    *,
    total: int,
    charted: int,
    sources: tuple[str, ...],
    flagged: int,
    compact: bool,
) -> LabTest:
    """A test from its rows (newest first; `worded` of them put into words) and its series."""
    name = _name(rows[0])
    target = {s.kind: s.unit for s in series}

    def in_words(r: Row) -> LabResult:
        kind = _kind(r)
        if kind is not None and kind in target:
            return _result(records, r, target[kind], convert=True, also=also)
        return _result(records, r, own_unit(r), also=also)

    results = tuple(in_words(r) for r in worded)
    latest = results[0] if worded and worded[0] is rows[0] else in_words(rows[0])
    return LabTest(
        key=key,
        name=name,
        count=total,
        charted=charted,
        latest=latest,
        series=tuple(
            LabSeries(
                unit=s.unit,
                unit_label=unit_words(s.unit),
                count=s.count,
                chart=_chart(
                    f"lab-{slug(key)}-{i}", name, unit_words(s.unit), s.points, compact=compact
                ),
            )
            for i, s in enumerate(series)
        ),
        results=results,
        sources=sources,
        flagged=flagged,
        about=about(rows[0].code),
    )


def _kind(row: Row) -> str | None:
    """The kind of unit of a numeric result (None: not a number)."""
    q = row.raw.get("valueQuantity")
    if isinstance(q, dict) and isinstance(q.get("value"), int | float):
        return measures.lab_kind(row.code, unit_of(q))
    return None


def _series_of(rows: list[Row], who: ranges.Person) -> tuple[_Series, ...]:
    """The numeric results (rows newest first), one series per kind of unit, most first."""
    numeric: dict[str, list[Row]] = {}
    for row in rows:
        if (kind := _kind(row)) is not None:
            numeric.setdefault(kind, []).append(row)
    series = []
    for kind, group in sorted(numeric.items(), key=lambda kv: -len(kv[1])):
        target = units.preferred_unit([unit_of(r.raw["valueQuantity"]) for r in group])
        target = measures.lab_unit(group[0].code, target)  # glucose: in the patient's units
        points = tuple(_point(r, target, who) for r in group)
        series.append(_Series(kind, target, len(group), points))
    return tuple(series)


def _other_flag(row: Row, who: ranges.Person) -> Flag | None:
    """The flag of a result that is not a number (a coded or worded one)."""
    usual = ranges.usual_range(row.raw, own_unit(row), row.effective_at, who)
    return ranges.flag(row.raw, None, usual)


def _point(row: Row, target: str | None, who: ranges.Person) -> _Point:
    q = row.raw["valueQuantity"]
    value: float = q["value"]  # a FhirDecimal keeps the digits sent (portal.fhirjson)
    converted = measures.convert(value, unit_of(q), target, row.code)
    value = value if converted is None else converted
    usual = ranges.usual_range(row.raw, unit_of(q), row.effective_at, who)
    low, high = usual.bounds_in(target) if usual else (None, None)
    flag = ranges.flag(row.raw, ranges.decimal(q["value"]), usual)
    return _Point(row.effective_at, _date(row), value, flag.words if flag else None, low, high)


def _name(row: Row) -> str:
    return lab_name(tidy(row.display) or concept_text(row.raw.get("code")) or "Unnamed test")


def own_unit(row: Row) -> str | None:
    """The unit a result was reported in."""
    q = row.raw.get("valueQuantity")
    return unit_of(q) if isinstance(q, dict) else None


def _result(
    records: Records,
    row: Row,
    target: str | None,
    *,
    convert: bool = False,
    also: dict[int, tuple[str, ...]] | None = None,
) -> LabResult:
    raw = row.raw
    q = raw.get("valueQuantity")
    value: float | None = None
    reported = None
    text = value_text(raw)
    if isinstance(q, dict) and isinstance(q.get("value"), int | float):
        own = unit_of(q)
        value = float(q["value"])
        if convert and own != target:
            converted = measures.convert(value, own, target, row.code)
            if converted is not None:
                reported = f"{text} as reported"
                value = converted
                comparator = q.get("comparator") or ""
                label = unit_words(target)
                text = f"{comparator}{number(value)} {label}".strip()
    absent = absent_reason(raw)
    if text is None:
        text = absent or "No value recorded"
    own = unit_of(q) if isinstance(q, dict) else None
    usual = ranges.usual_range(raw, own, row.effective_at, ranges.person(records))
    low, high = usual.bounds_in(target) if usual else (None, None)
    range_words = usual.words(target) if usual else None
    reported_value = q.get("value") if isinstance(q, dict) else None
    flag = ranges.flag(raw, ranges.decimal(reported_value), usual)
    status = row.status if row.status not in (None, "final") else None
    interpretation_note = concept_text(raw.get("interpretation")) if flag is None else None
    return LabResult(
        id=row.id,
        at=row.effective_at,
        date=_date(row),
        value=value,
        unit=target,
        text=text,
        reported=reported,
        flag=flag,
        range=range_words,
        low=low,
        high=high,
        absent=absent is not None and value_text(raw) is None,
        status=status_words(status),
        note=" ".join(
            n
            for n in (
                interpretation_note if interpretation_note not in (None, "Normal") else None,
                *(str(x["text"]) for x in raw.get("note") or [] if isinstance(x, dict)),
            )
            if n
        )
        or None,
        source=records.source(row),
        also=(also or {}).get(row.id, ()),
        range_source=usual.source_words if usual else None,
        no_range=None if range_words else ranges.missing_words(raw, own),
        about=about(row.code),
    )


def _chart(
    chart_id: str, name: str, unit: str, points: Sequence[_Point], *, compact: bool
) -> Chart | None:
    plotted: list[tuple[datetime, _Point]] = []
    for p in points:
        if p.at is not None:
            plotted.append((p.at, p))
    if not plotted:
        return None
    ranged = next((p for _, p in plotted if p.low is not None or p.high is not None), None)
    band = (ranged.low, ranged.high) if ranged else None
    measurements = [
        Measurement(
            at=at,
            value=p.value,
            label=_label(p, unit) if p.flag else "",
            flagged=p.flag is not None,
        )
        for at, p in plotted
    ]
    newest, oldest = plotted[0][1], plotted[-1][1]
    values = [m.value for m in measurements]
    flagged = sum(1 for m in measurements if m.flagged)
    desc = (
        f"{len(plotted)} result{'s' if len(plotted) != 1 else ''} "
        f"from {oldest.date} to {newest.date}; "
        f"lowest {number(min(values))}, highest {number(max(values))} {unit}. "
        f"Latest {number(newest.value)} {unit} on {newest.date}."
    )
    if ranged:
        desc += f" Usual range {_band_words(ranged.low, ranged.high, unit)}."
    if flagged:
        desc += f" {flagged} outside the usual range."
    return line_chart(
        chart_id,
        f"{name} over time",
        [(name, measurements)],
        unit=unit,
        band=band,
        desc=desc.replace("  ", " "),
        compact=compact,
    )


def _band_words(low: float | None, high: float | None, unit: str) -> str:
    if low is not None and high is not None:
        return f"{number(low)}\u2013{number(high)} {unit}".strip()
    if high is not None:
        return f"up to {number(high)} {unit}".strip()
    return f"{number(low or 0)} or more {unit}".strip()


def _label(p: _Point, unit: str) -> str:
    flag = f", {p.flag.lower()}" if p.flag else ""
    return f"{number(p.value)} {unit} on {p.date}{flag}".replace("  ", " ")


def _date(row: Row) -> str | None:
    raw = row.raw
    return (
        date_text(raw.get("effectiveDateTime"))
        or date_text((raw.get("effectivePeriod") or {}).get("start"))
        or date_text(raw.get("issued"))
        or date_text(row.effective_at)
    )


def slug(text: str) -> str:
    """A DOM-id-safe version of a key."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def flag_of(row: Row, who: ranges.Person) -> Flag | None:
    """The flag of one result: the clinic's interpretation or range, else the built-in table."""
    raw = row.raw
    q = raw.get("valueQuantity")
    unit = unit_of(q) if isinstance(q, dict) else None
    value = q.get("value") if isinstance(q, dict) else None
    usual = ranges.usual_range(raw, unit, row.effective_at, who)
    return ranges.flag(raw, ranges.decimal(value), usual)
