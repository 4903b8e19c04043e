"""Vital signs: latest values, and trends of weight, height, BMI, blood pressure and the rest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from portal.models import FhirRecord
from portal.phr import facts, measures, merge, ranges, units
from portal.phr.about_tests import about_vital
from portal.phr.charts import Chart, Measurement, line_chart
from portal.phr.labs import unit_of
from portal.phr.records import Page, Records, Row
from portal.phr.words import (
    absent_reason,
    date_text,
    lab_name,
    number,
    tidy,
    unit_words,
    value_text,
)

BP_PANELS = ("85354-9", "55284-4")
SYSTOLIC, DIASTOLIC = "8480-6", "8462-4"
RECENT_IN_CARD = 5
CHART_POINTS = 30  # the overview charts each kind's latest readings (as labs); its own page more
ELEMENTS = (
    "effectiveDateTime",
    "valueQuantity",
    "valueCodeableConcept",
    "valueString",
    "valueInteger",
    "component",
    "dataAbsentReason",
)
KEYED = (*ELEMENTS, "identifier")  # and what folding reads


@dataclass(frozen=True)
class Kind:
    key: str
    name: str
    codes: tuple[str, ...]
    unit: str  # UCUM unit the chart uses; other units are converted when that is safe


KINDS = (
    Kind("blood-pressure", "Blood pressure", (*BP_PANELS, SYSTOLIC, DIASTOLIC), "mm[Hg]"),
    Kind("weight", "Weight", ("29463-7", "3141-9"), "kg"),
    Kind("height", "Height", ("8302-2", "8306-3", "8308-9"), "cm"),
    Kind("bmi", "Body mass index (BMI)", ("39156-5",), "kg/m2"),
    Kind("heart-rate", "Heart rate", ("8867-4",), "/min"),
    Kind("temperature", "Temperature", ("8310-5", "8331-1", "8332-9", "8333-7"), "Cel"),
    Kind("breathing", "Breathing rate", ("9279-1",), "/min"),
    Kind("oxygen", "Oxygen level", ("2708-6", "59408-5"), "%"),
    Kind("head", "Head size", ("9843-4", "8287-5"), "cm"),
    Kind("glucose", "Blood glucose", ("41653-7",), "mg/dL"),
    Kind("pain", "Pain score", ("72514-3",), "{score}"),
    Kind("steps", "Steps", ("41950-7",), "/d"),
)
KIND_BY_KEY = {k.key: k for k in KINDS}
KIND_BY_CODE = {code: k for k in KINDS for code in k.codes}


@dataclass(frozen=True)
class Reading:
    id: int
    at: datetime | None
    date: str | None
    text: str
    value: float | None  # the main number in the kind's unit (systolic for blood pressure)
    second: float | None  # diastolic
    absent: bool
    source: str
    reported: str | None = None  # as the clinic recorded it, when converted
    mine: bool = False  # the patient's own entry (shown with a "You" badge, editable)
    also: tuple[str, ...] = ()  # other sources that sent this same reading
    flag: ranges.Flag | None = None  # outside the usual range, in words
    category: ranges.Category | None = None  # blood pressure: the AHA category (adults)


@dataclass(frozen=True)
class VitalCard:
    key: str
    name: str
    unit_label: str
    readings: tuple[Reading, ...]  # newest first (only the most recent ones on the overview)
    latest: Reading  # the newest reading of all
    count: int  # every reading, shown or not
    charted: int  # how many of the latest readings the chart shows
    chart: Chart | None
    kept_apart: tuple[Reading, ...]  # values in units that cannot be converted safely
    apart_count: int  # how many there are (the overview lists none)
    about: str | None = None  # what is measured, in one plain line
    usual: str | None = None  # the usual range of the latest reading, in words
    usual_source: str | None = None  # whose range it is
    no_range: str | None = None  # why no usual range is shown, in words

    @property
    def recent(self) -> tuple[Reading, ...]:
        return self.readings[:RECENT_IN_CARD]


@dataclass(frozen=True)
class OtherVital:
    name: str
    latest: str
    date: str | None
    count: int
    source: str


@dataclass(frozen=True)
class Vitals:
    cards: tuple[VitalCard, ...]
    others: tuple[OtherVital, ...]
    total: int


CHARTED = tuple(code for kind in KINDS for code in kind.codes)
HISTORY_PER_PAGE = 50  # a kind's own page lists its readings a page at a time
HISTORY_CHARTED = 200  # and charts its latest this many


@dataclass(frozen=True)
class VitalHistory:
    card: VitalCard  # its readings: this page's
    page: Page[Reading]


def vitals(records: Records) -> Vitals:
    """Every vital sign: one card (chart and recent readings) per kind, then the others; each
    reading sent by several sources is counted once, as the kind's own page lists it."""
    stored = _stored(records)
    groups = [_Group(**e.data) for e in stored.kinds.all()]
    spans = []
    for g in groups:  # the latest few (charted), else the first few kept apart
        spans.append((g.start, g.start + (min(g.usable, CHART_POINTS) or RECENT_IN_CARD)))
    read = _read(
        records,
        [(g.key, chosen) for g, chosen in zip(groups, stored.readings.slices(spans), strict=True)],
    )
    cards = []
    for g, found in zip(groups, read, strict=True):
        if found:
            charted = found if g.usable else []
            cards.append(_build(records, g, found[:RECENT_IN_CARD], charted, []))
    other_entries = stored.others.all()
    rows = (
        {
            r.id: r
            for r in records.rows(
                ["vitals"],
                where=[FhirRecord.id.in_([e.ids[0] for e in other_entries])],
                elements=KEYED,
            )
        }
        if other_entries
        else {}
    )
    others = []
    for e in other_entries:
        row = rows.get(e.ids[0])
        if row is None:
            continue
        others.append(
            OtherVital(
                name=lab_name(tidy(row.display) or "Measurement"),
                latest=value_text(row.raw) or absent_reason(row.raw) or "No value recorded",
                date=date_text(row.raw.get("effectiveDateTime")) or date_text(row.effective_at),
                count=int(e.data),
                source=records.source(row),
            )
        )
    total = sum(g.usable + g.apart for g in groups) + sum(o.count for o in others)
    return Vitals(tuple(cards), tuple(others), total)


def vital_history(
    records: Records, key: str, page: int = 1, size: int = HISTORY_PER_PAGE
) -> VitalHistory | None:
    """One kind's readings, a page at a time (newest first), under a chart of its latest
    HISTORY_CHARTED; readings in units that do not convert on the first page (None when this
    record has none of that kind)."""
    stored = _stored(records)
    group = next((g for e in stored.kinds.all() if (g := _Group(**e.data)).key == key), None)
    if group is None:
        return None
    total = group.usable or group.apart
    pages = max(1, -(-total // size))
    page = min(max(1, page), pages)
    first, last = (page - 1) * size, min(page * size, total)
    start, apart_at = group.start, group.start + group.usable
    charted_span = (start, start + min(group.usable, HISTORY_CHARTED))
    spans = [charted_span, (start + first, start + last), (start, start + 1)]
    spans.append((apart_at, apart_at + group.apart) if group.usable and page == 1 else (0, 0))
    if last <= charted_span[1] - start:
        spans[1] = (0, 0)  # the chart's own readings: read once
    chosen = stored.readings.slices(spans)
    charted, listed, newest, apart = _read(records, [(key, c) for c in chosen])
    if group.usable and spans[1] == (0, 0):
        listed = charted[first:last]
    if not listed or not newest:
        return None
    card = _build(records, group, listed, charted, apart, newest[0])
    return VitalHistory(card, Page(list(card.readings), page, size, total))


def latest_vitals(records: Records) -> list[tuple[str, Reading]]:
    """The latest reading of each kind of vital sign: (name, reading); one sent by several
    sources once (as the first-connected clinic has it), the others in `also`."""
    stored = _stored(records)
    groups = [_Group(**e.data) for e in stored.kinds.all()]
    chosen = stored.readings.slices([(g.start, g.start + 1) for g in groups])
    found = []
    for g, newest in zip(
        groups,
        _read(records, [(g.key, c) for g, c in zip(groups, chosen, strict=True)]),
        strict=True,
    ):
        if newest:
            card = _build(records, g, newest, [], [])
            if not card.latest.absent:
                found.append((card.name, card.latest))
    return found


@dataclass(frozen=True)
class _Group:
    """A kind's readings in the stored list (newest first): where they start, how many are in
    a unit that converts to the kind's (charted), then how many are kept apart (others)."""

    key: str
    start: int
    usable: int
    apart: int


@dataclass(frozen=True)
class _Stored:
    kinds: facts.Folded  # one entry per kind present, its data a _Group
    readings: facts.Folded  # every reading once, kind after kind (see _Group)
    others: facts.Folded  # one entry per other measurement: its latest, data its count


def _stored(records: Records) -> _Stored:
    """The readings folded (each once) and measured in the patient's units when the record
    changed, then stored (portal.phr.facts): pages read only the readings they show."""
    worked: list[tuple[list[facts.Entry], ...]] = []

    def work(part: int) -> list[facts.Entry]:
        if not worked:
            worked.append(_work_out(records))
        return worked[0][part]

    return _Stored(
        facts.folded(records, "vital-kinds", lambda: work(0)),
        facts.folded(records, "vital-readings", lambda: work(1)),
        facts.folded(records, "vital-others", lambda: work(2)),
    )


def _work_out(records: Records) -> tuple[list[facts.Entry], ...]:
    by_kind: dict[str, list[Row]] = {}
    for row in records.rows(["vitals"], where=[FhirRecord.code.in_(CHARTED)], elements=KEYED):
        by_kind.setdefault(KIND_BY_CODE[row.code or ""].key, []).append(row)
    kinds: list[facts.Entry] = []
    readings: list[facts.Entry] = []
    for base in KINDS:
        if base.key not in by_kind:
            continue
        found = merge.fold(records, by_kind[base.key], same=merge.reading_moment)
        fact_of = {f.row.id: f for f in found}
        measured = _measured(_in_units(base), [f.row for f in found])
        usable = [m for m in measured if not m.apart]
        apart = [m for m in measured if m.apart]
        group = _Group(base.key, len(readings), len(usable), len(apart))
        kinds.append(facts.Entry((found[0].row.id,), data=asdict(group)))
        for m in usable + apart:
            parts = [fact_of[r.id] for r in m.rows]  # a pair taken together: both facts
            ids = tuple(i for f in parts for i in f.ids)
            readings.append(facts.Entry(ids, data=[len(f.ids) for f in parts]))
    by_code: dict[str | None, list[Row]] = {}
    for row in records.rows(
        ["vitals"],
        where=[sa.or_(FhirRecord.code.is_(None), FhirRecord.code.notin_(CHARTED))],
        elements=KEYED,
    ):
        by_code.setdefault(row.code or f"name:{row.display or ''}", []).append(row)
    others = [
        facts.Entry((kept[0].row.id,), data=len(kept))
        for rows in by_code.values()
        if (kept := merge.fold(records, rows, same=merge.reading_moment))
    ]
    return kinds, readings, others


_Found = tuple["_Measured", tuple[str, ...]]  # a reading, and the other sources that sent it


def _read(records: Records, wanted: list[tuple[str, list[facts.Entry]]]) -> list[list[_Found]]:
    """Stored readings of several kinds measured again from their rows, read in one query."""
    ids = [i for _, chosen in wanted for e in chosen for i in e.ids]
    rows = (
        {r.id: r for r in records.rows(["vitals"], where=[FhirRecord.id.in_(ids)], elements=KEYED)}
        if ids
        else {}
    )
    out = []
    for key, chosen in wanted:
        kind = _in_units(KIND_BY_KEY[key])
        found: list[_Found] = []
        for e in chosen:
            parts, at = [], 0
            for n in e.data or [len(e.ids)]:
                part = tuple(rows[i] for i in e.ids[at : at + n] if i in rows)
                at += n
                if part:
                    parts.append(merge.Fact(part))
            measured = _measured(kind, [f.row for f in parts])
            if measured:
                also = tuple(dict.fromkeys(s for f in parts for s in f.also(records)))
                found.append((measured[0], also))
        out.append(found)
    return out


def _in_units(kind: Kind) -> Kind:
    return replace(kind, unit=measures.unit_for(kind.key, kind.unit))  # the patient's units


@dataclass(frozen=True)
class _Measured:
    """A reading's numbers in the kind's unit, before any words are made of them."""

    row: Row
    value: float | None
    second: float | None = None  # diastolic
    converted: bool = False  # the clinic recorded another (convertible) unit
    apart: bool = False  # recorded in a unit that cannot be converted safely
    both: Row | None = None  # blood pressure taken as two readings: the other one

    @property
    def rows(self) -> tuple[Row, ...]:
        return (self.row, self.both) if self.both else (self.row,)


def _measured(kind: Kind, rows: list[Row]) -> list[_Measured]:
    return _blood_pressure(rows) if kind.key == "blood-pressure" else _measure(kind, rows)


def _build(
    records: Records,
    group: _Group,
    listed: list[_Found],
    charted: list[_Found],
    apart: list[_Found],
    newest: _Found | None = None,
) -> VitalCard:
    """A kind's card: `listed` in words, `charted` on its chart, the newest as its latest."""
    kind = _in_units(KIND_BY_KEY[group.key])
    newest = newest or listed[0]
    who = ranges.person(records)
    everything = [*listed, *charted, *apart, newest]
    also = {m.row.id: sources for m, sources in everything if sources}
    judged = {m.row.id: _judge(kind, m, who) for m, _ in everything if not m.apart}
    latest = judged.get(newest[0].row.id)
    label = unit_words(kind.unit)
    chart = [m for m, _ in charted]

    def words(found: list[_Found]) -> tuple[Reading, ...]:
        return tuple(_reading(records, kind, m, also, judged) for m, _ in found)

    return VitalCard(
        key=kind.key,
        name=kind.name,
        unit_label=label,
        readings=words(listed),
        latest=words([newest])[0],
        count=group.usable or group.apart,
        charted=len(chart),
        chart=_chart(kind, chart, label, records.own_ids, judged),
        kept_apart=words(apart),
        apart_count=group.apart if group.usable else 0,
        about=about_vital(kind.key),
        usual=latest.usual.words(kind.unit) if latest and latest.usual else None,
        usual_source=latest.usual.source_words if latest and latest.usual else None,
        no_range=_no_range(kind, latest),
    )


@dataclass(frozen=True)
class _Judged:
    """A reading against its usual range (or, for blood pressure, the AHA categories)."""

    usual: ranges.Usual | None
    flag: ranges.Flag | None
    category: ranges.Category | None = None
    second_high: bool = False  # blood pressure: the bottom number is above normal


def _judge(kind: Kind, m: _Measured, who: ranges.Person) -> _Judged:
    age = ranges.age_on(who.born, ranges.day_of(m.row.raw, m.row.effective_at))
    if kind.key == "blood-pressure":
        if age is not None and age < ranges.ADULT:
            return _Judged(None, None)  # children's readings are read against growth tables
        top, bottom = ranges.decimal(m.value), ranges.decimal(m.second)
        category = ranges.bp_category(top, bottom)
        if category is None or category.key == "normal":
            return _Judged(None, None, category)
        high = ranges.Flag("H", category.words, "high")
        assert top is not None and bottom is not None  # a category needs both numbers
        return _Judged(None, high, category, second_high=bottom >= ranges.BP_NORMAL_BOTTOM)
    entry = ranges.VITALS.get(kind.key)
    table_unit = KIND_BY_KEY[kind.key].unit  # the table's unit; `kind.unit` is the patient's
    usual = ranges.built_in(entry, table_unit, age, who.sex) if entry else None
    value = m.value
    if value is not None and table_unit != kind.unit:
        value = units.convert(value, kind.unit, table_unit)  # compared in the table's unit
    return _Judged(usual, ranges.flag({}, ranges.decimal(value), usual))


def _no_range(kind: Kind, latest: _Judged | None) -> str | None:
    if kind.key == "blood-pressure":
        return None if latest and latest.category else BP_NO_CATEGORY
    if latest and latest.usual:
        return None
    return NO_RANGE_WORDS.get(kind.key, f"{ranges.NO_RANGE}.")


# Why a kind of vital sign has no usual range, where that is known.
NO_RANGE_WORDS = {
    "weight": "Weight has no usual range on its own: your BMI compares it with your height.",
    "height": "Height has no usual range; a child's is read on a growth chart.",
    "head": "Head size is read on a growth chart for the child's age and sex.",
    "bmi": "A child's BMI is read on a growth chart for their age and sex.",
    "glucose": "No usual range is shown: what is usual depends on when you last ate.",
    "pain": "0 means no pain and 10 the worst pain you can imagine.",
    "steps": "There is no usual number of steps; more is usually better.",
}
BP_NO_CATEGORY = (
    "Blood pressure categories are for adults; a child's reading is compared with tables "
    "for their age, sex and height."
)


def _measure(kind: Kind, rows: list[Row]) -> list[_Measured]:
    out = []
    for row in rows:
        q = row.raw.get("valueQuantity")
        if isinstance(q, dict) and isinstance(q.get("value"), int | float):
            own = unit_of(q)
            # The value itself (its digits as sent) when no conversion is needed.
            value = measures.convert(q["value"], own, kind.unit, row.code)
            if value is None:
                out.append(_Measured(row, float(q["value"]), apart=True))
            else:
                out.append(_Measured(row, value, converted=own != kind.unit))
        else:
            out.append(_Measured(row, None))
    return out


def _reading(
    records: Records,
    kind: Kind,
    m: _Measured,
    also: dict[int, tuple[str, ...]],
    judged: dict[int, _Judged],
) -> Reading:
    text, reported = _words(kind, m)
    judgement = judged.get(m.row.id)
    return Reading(
        id=m.row.id,
        at=m.row.effective_at,
        date=_date(m.row),
        text=text,
        value=None if m.apart else m.value,
        second=m.second,
        absent=m.value is None and m.second is None,
        source=records.source(m.row),
        reported=reported,
        mine=records.is_own(m.row),
        also=also.get(m.row.id, ()),
        flag=judgement.flag if judgement else None,
        category=judgement.category if judgement else None,
    )


def _words(kind: Kind, m: _Measured) -> tuple[str, str | None]:
    """(the reading in words, what the clinic recorded when it was converted)."""
    raw = m.row.raw
    reported = None
    if kind.key == "blood-pressure":
        if m.value is None and m.second is None:
            text = absent_reason(raw) or "No value recorded"
        else:
            top = number(m.value, 0) if m.value is not None else "?"
            bottom = number(m.second, 0) if m.second is not None else "?"
            text = f"{top}/{bottom} mmHg"
    elif m.value is None or m.apart:
        text = value_text(raw) or absent_reason(raw) or "No value recorded"
    else:
        text = f"{number(m.value)} {unit_words(kind.unit)}".strip()
        reported = f"{value_text(raw)} as recorded" if m.converted else None
    return text, reported


def _date(row: Row) -> str | None:
    return date_text(row.raw.get("effectiveDateTime")) or date_text(row.effective_at)


def _mmhg(node: dict[str, Any]) -> float | None:
    q = node.get("valueQuantity")
    if isinstance(q, dict) and isinstance(q.get("value"), int | float):
        return units.convert(float(q["value"]), unit_of(q) or "mm[Hg]", "mm[Hg]")
    return None


def _blood_pressure(rows: list[Row]) -> list[_Measured]:
    """Panels with systolic/diastolic components, and separate readings taken together."""
    out = []
    loose: dict[tuple[int, datetime | None], dict[str, Row]] = {}
    for row in rows:
        if row.code in BP_PANELS:
            parts: dict[str, float | None] = {}
            for component in row.raw.get("component") or []:
                codes = [c.get("code") for c in (component.get("code") or {}).get("coding") or []]
                for code in (SYSTOLIC, DIASTOLIC):
                    if code in codes:
                        parts[code] = _mmhg(component)
            out.append(_Measured(row, parts.get(SYSTOLIC), parts.get(DIASTOLIC)))
        else:
            loose.setdefault((row.connection_id, row.effective_at), {})[row.code or ""] = row
    for pair in loose.values():
        sys_row, dia_row = pair.get(SYSTOLIC), pair.get(DIASTOLIC)
        first = sys_row or dia_row
        assert first is not None  # every group holds one or the other
        out.append(
            _Measured(
                first,
                _mmhg(sys_row.raw) if sys_row else None,
                _mmhg(dia_row.raw) if dia_row else None,
                both=dia_row if sys_row and dia_row else None,
            )
        )
    if loose:
        out.sort(key=lambda m: (m.row.effective_at is not None, m.row.effective_at or _EPOCH))
        out.reverse()
    return out


_EPOCH = datetime(1, 1, 1, tzinfo=UTC)


def shown_text(row: Row) -> str | None:
    """A weight, height, temperature or glucose measurement in the patient's units, in words
    (None for other measurements, or when its unit does not convert)."""
    kind = KIND_BY_CODE.get(row.code or "")
    key = kind.key if kind else ("glucose" if measures.substance_of(row.code) else None)
    q = row.raw.get("valueQuantity")
    if key not in measures.SHOWN or not isinstance(q, dict):
        return None
    if not isinstance(q.get("value"), int | float) or isinstance(q.get("value"), bool):
        return None
    target = measures.unit_for(key, "")
    value = measures.convert(float(q["value"]), unit_of(q), target, row.code)
    if value is None:
        return None
    return f"{q.get('comparator') or ''}{number(value)} {unit_words(target)}"


def blood_pressure_texts(rows: list[Row]) -> list[str]:
    """Blood pressure readings among `rows` as `120/80 mmHg`."""
    kind = KIND_BY_KEY["blood-pressure"]
    return [_words(kind, m)[0] for m in _blood_pressure(rows)]


def _points(
    measured: list[_Measured], second: bool = False
) -> list[tuple[datetime, float, _Measured]]:
    out = []
    for m in measured:
        value = m.second if second else m.value
        if m.row.effective_at is not None and value is not None:
            out.append((m.row.effective_at, value, m))
    return out


def _chart(
    kind: Kind,
    measured: list[_Measured],
    unit: str,
    own: frozenset[int] = frozenset(),
    judged: dict[int, _Judged] | None = None,
) -> Chart | None:
    main = _points(measured)
    if not main:
        return None
    judged = judged or {}

    def plotted(
        points: list[tuple[datetime, float, _Measured]], second: bool = False
    ) -> list[Measurement]:
        out = []
        for at, value, m in points:
            mine = m.row.connection_id in own
            j = judged.get(m.row.id)
            flagged = j is not None and j.flag is not None
            if flagged and j and j.category:  # each number flagged only when it is high
                flagged = j.second_high if second else (m.value or 0) >= ranges.BP_NORMAL_TOP
            words = "Your own reading" if mine else ""
            if flagged and j and j.flag:
                words = f"{number(value)} {unit} on {_date(m.row)}, {j.flag.words.lower()}"
            out.append(Measurement(at, value, words, flagged=flagged, mine=mine))
        return out

    band = None
    usual_words = None
    if kind.key == "blood-pressure":
        second = _points(measured, second=True)
        series = [
            ("Top number (systolic)", plotted(main)),
            ("Bottom number (diastolic)", plotted(second, second=True)),
        ]
    else:
        series = [(kind.name, plotted(main))]
        newest_judged = judged.get(main[0][2].row.id)
        if newest_judged and newest_judged.usual:
            band = newest_judged.usual.bounds_in(kind.unit)
            usual_words = newest_judged.usual.words(kind.unit)
    values = [m.value for _, ms in series for m in ms]
    newest, oldest = main[0][2], main[-1][2]
    latest = (
        f"{number(newest.value, 0)}/{number(newest.second, 0)} mmHg"
        if (kind.key == "blood-pressure" and newest.value is not None and newest.second is not None)
        else f"{number(main[0][1])} {unit}"
    )
    desc = (
        f"{len(main)} reading{'s' if len(main) != 1 else ''} from {_date(oldest.row)} "
        f"to {_date(newest.row)}; lowest {number(min(values))}, highest {number(max(values))} "
        f"{unit}. Latest {latest} on {_date(newest.row)}."
    )
    if usual_words:
        desc += f" Usual range {usual_words}."
    flagged = sum(1 for _, ms in series for m in ms if m.flagged)
    if flagged:
        desc += f" {flagged} above or below the usual range."
    return line_chart(
        f"vital-{kind.key}", f"{kind.name} over time", series, unit=unit, band=band, desc=desc
    )
