"""Vital signs: latest values, and trends of weight, height, BMI, blood pressure and the rest."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from portal.models import FhirRecord
from portal.phr import measures, ranges, units
from portal.phr.about_tests import about_vital
from portal.phr.charts import Chart, Measurement, line_chart
from portal.phr.labs import unit_of
from portal.phr.merge import distinct
from portal.phr.records import Records, Row
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
CHART_POINTS = 60  # the overview charts each kind's latest readings; its own page has them all
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
    count: int  # every reading, shown or not
    charted: int  # how many of the latest readings the chart shows
    chart: Chart | None
    kept_apart: tuple[Reading, ...]  # values in units that cannot be converted safely
    about: str | None = None  # what is measured, in one plain line
    usual: str | None = None  # the usual range of the latest reading, in words
    usual_source: str | None = None  # whose range it is
    no_range: str | None = None  # why no usual range is shown, in words

    @property
    def latest(self) -> Reading:
        return self.readings[0]

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


def vitals(records: Records) -> Vitals:
    """Every vital sign: one card (chart and recent readings) per kind, then the others; each
    reading sent by several sources is counted once, as the kind's own page lists it."""
    by_kind: dict[str, list[Row]] = {}
    for row in records.rows(["vitals"], where=[FhirRecord.code.in_(CHARTED)], elements=KEYED):
        by_kind.setdefault(KIND_BY_CODE[row.code or ""].key, []).append(row)
    cards = tuple(
        card
        for k in KINDS
        if k.key in by_kind
        if (card := _card(records, k, by_kind[k.key], shown=RECENT_IN_CARD, points=CHART_POINTS))
    )
    by_code: dict[str | None, list[Row]] = {}
    for row in records.rows(
        ["vitals"],
        where=[sa.or_(FhirRecord.code.is_(None), FhirRecord.code.notin_(CHARTED))],
        elements=KEYED,
    ):
        by_code.setdefault(row.code or f"name:{row.display or ''}", []).append(row)
    others = []
    for rows in by_code.values():
        kept, _ = distinct(records, rows)
        row = kept[0]
        others.append(
            OtherVital(
                name=lab_name(tidy(row.display) or "Measurement"),
                latest=value_text(row.raw) or absent_reason(row.raw) or "No value recorded",
                date=date_text(row.raw.get("effectiveDateTime")) or date_text(row.effective_at),
                count=len(kept),
                source=records.source(row),
            )
        )
    total = sum(c.count + len(c.kept_apart) for c in cards) + sum(o.count for o in others)
    return Vitals(cards, tuple(others), total)


def vital_history(records: Records, key: str) -> VitalCard | None:
    """Every reading of one kind of vital sign (None when there are none)."""
    kind = KIND_BY_KEY.get(key)
    if kind is None:
        return None
    rows = records.rows(["vitals"], where=[FhirRecord.code.in_(kind.codes)], elements=KEYED)
    return _card(records, kind, rows) if rows else None


def latest_vitals(records: Records) -> list[tuple[str, Reading]]:
    """The latest reading of each kind of vital sign: (name, reading); one sent by several
    sources once (as the first-connected clinic has it), the others in `also`."""
    # Each source gives a reading at most one row: the latest of each source's are enough.
    latest = records.recent_per_code(
        ["vitals"],
        max(1, len(records.ids)),
        where=[FhirRecord.code.in_(CHARTED)],
        elements=KEYED,
    )
    by_kind: dict[str, list[Row]] = {}
    for row, _ in latest:
        by_kind.setdefault(KIND_BY_CODE[row.code or ""].key, []).append(row)
    found = []
    for kind in KINDS:
        group = by_kind.get(kind.key)
        card = _card(records, kind, group, shown=1) if group else None
        if card and not card.latest.absent:
            found.append((kind.name, card.latest))
    return found


@dataclass(frozen=True)
class _Measured:
    """A reading's numbers in the kind's unit, before any words are made of them."""

    row: Row
    value: float | None
    second: float | None = None  # diastolic
    converted: bool = False  # the clinic recorded another (convertible) unit
    apart: bool = False  # recorded in a unit that cannot be converted safely


def _card(
    records: Records,
    kind: Kind,
    rows: list[Row],
    *,
    shown: int | None = None,
    points: int | None = None,
) -> VitalCard | None:
    """A kind's readings (newest first), each reading once; only `shown` of them put into
    words, the latest `points` charted (None: all). Its count is of every reading in `rows`.
    """
    rows, also = distinct(records, rows)  # one reading sent by two clinics: once
    kind = replace(kind, unit=measures.unit_for(kind.key, kind.unit))  # the patient's units
    measured = _blood_pressure(rows) if kind.key == "blood-pressure" else _measure(kind, rows)
    usable = [m for m in measured if not m.apart]
    apart = [m for m in measured if m.apart]
    listed = usable or apart
    if not listed:
        return None
    label = unit_words(kind.unit)
    chosen = listed if shown is None else listed[:shown]
    judged = {m.row.id: _judge(kind, m, ranges.person(records)) for m in usable}
    latest = judged.get(listed[0].row.id)
    return VitalCard(
        key=kind.key,
        name=kind.name,
        unit_label=label,
        readings=tuple(_reading(records, kind, m, also, judged) for m in chosen),
        count=len(listed),
        charted=len(usable[:points]),
        chart=_chart(kind, usable[:points], label, records.own_ids, judged),
        kept_apart=tuple(_reading(records, kind, m, also, judged) for m in apart) if usable else (),
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
