"""Trend charts as plain geometry, drawn as inline SVG by a template macro.

No JavaScript: the server computes every coordinate. Each chart carries a title and a
description for screen readers; pages show its values as a table next to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from portal.phr import localtime
from portal.phr.words import MONTHS, number

WIDTH = 360
HEIGHT = 190
COMPACT_HEIGHT = 140
LEFT, RIGHT, TOP, BOTTOM = 46, 14, 12, 28


@dataclass(frozen=True)
class Measurement:
    """One value to plot."""

    at: datetime
    value: float
    label: str  # what a screen reader or tooltip says: "5.4 % on 3 Mar 2023, high"
    flagged: bool = False
    mine: bool = False  # the patient's own reading, drawn differently from the clinics'


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    flagged: bool
    mine: bool = False


@dataclass(frozen=True)
class Series:
    name: str
    style: int  # 1, 2: which line style (colour and dash) draws it
    points: tuple[Point, ...]
    path: str


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True)
class Chart:
    """Everything the SVG macro needs; coordinates are in viewBox units."""

    id: str
    title: str
    desc: str
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    series: tuple[Series, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    band: tuple[float, float] | None  # y of the top and bottom of the normal range
    unit: str
    legend: bool
    flagged: bool  # some points are outside the normal range
    mine: bool = False  # some points are the patient's own readings


def line_chart(
    chart_id: str,
    title: str,
    series: list[tuple[str, list[Measurement]]],
    *,
    unit: str = "",
    band: tuple[float | None, float | None] | None = None,
    desc: str = "",
    compact: bool = False,
) -> Chart | None:
    """A time-series chart of one or more series (None when there is nothing to plot)."""
    points = [m for _, ms in series for m in ms if math.isfinite(m.value)]
    if not points:
        return None
    height = COMPACT_HEIGHT if compact else HEIGHT
    left, right, top, bottom = LEFT, WIDTH - RIGHT, TOP, height - BOTTOM
    values = [m.value for m in points]
    if band:
        values += [v for v in band if v is not None]
    y_ticks_values = nice_ticks(min(values), max(values), 3 if compact else 5)
    y_min, y_max = y_ticks_values[0], y_ticks_values[-1]
    times = [m.at.timestamp() for m in points]
    t_min, t_max = min(times), max(times)
    if t_max == t_min:
        t_min, t_max = t_min - 86400, t_max + 86400

    def x_of(at: datetime) -> float:
        return round(left + (at.timestamp() - t_min) / (t_max - t_min) * (right - left), 1)

    def y_of(value: float) -> float:
        return round(bottom - (value - y_min) / (y_max - y_min) * (bottom - top), 1)

    drawn = []
    for i, (name, measurements) in enumerate(series):
        ordered = sorted((m for m in measurements if math.isfinite(m.value)), key=lambda m: m.at)
        pts = tuple(Point(x_of(m.at), y_of(m.value), m.label, m.flagged, m.mine) for m in ordered)
        path = " ".join(f"{'M' if j == 0 else 'L'}{p.x} {p.y}" for j, p in enumerate(pts))
        drawn.append(Series(name, i + 1, pts, path))

    band_y = None
    if band and (band[0] is not None or band[1] is not None):
        low = band[0] if band[0] is not None else y_min
        high = band[1] if band[1] is not None else y_max
        band_y = (y_of(high), y_of(low))
    x_ticks = tuple(
        Tick(x_of(at), label) for at, label in time_ticks(t_min, t_max, 3 if compact else 4)
    )
    return Chart(
        id=chart_id,
        title=title,
        desc=desc,
        width=WIDTH,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        series=tuple(drawn),
        y_ticks=tuple(Tick(y_of(v), number(v)) for v in y_ticks_values),
        x_ticks=x_ticks,
        band=band_y,
        unit=unit,
        legend=len(series) > 1,
        flagged=any(m.flagged for m in points),
        mine=any(m.mine for m in points),
    )


def nice_ticks(low: float, high: float, count: int) -> list[float]:
    """Round tick values covering [low, high] (about `count` of them)."""
    if high == low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw_step = (high - low) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw_step)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    if len(ticks) < 2:
        ticks.append(round(start + step, 10))
    return ticks


def time_ticks(t_min: float, t_max: float, count: int) -> list[tuple[datetime, str]]:
    """Tick dates between two timestamps: years for long spans, months for short ones (on the
    patient's calendar: a new year starts at their midnight)."""
    start = localtime.local(datetime.fromtimestamp(t_min, UTC))
    end = localtime.local(datetime.fromtimestamp(t_max, UTC))
    zone = start.tzinfo
    years = end.year - start.year
    ticks: list[tuple[datetime, str]] = []
    if years >= 2:
        step = max(1, math.ceil(years / count))
        for year in range(start.year + 1, end.year + 1, step):
            ticks.append((datetime(year, 1, 1, tzinfo=zone), str(year)))
        return ticks
    months = (end.year - start.year) * 12 + end.month - start.month
    step = max(1, math.ceil(months / count))
    year, month = start.year, start.month
    for _ in range(0, months + 1, step):
        month += step
        while month > 12:
            month -= 12
            year += 1
        at = datetime(year, month, 1, tzinfo=zone)
        if at.timestamp() > t_max:
            break
        new_year = not ticks or ticks[-1][0].year != year
        ticks.append((at, f"{MONTHS[month - 1]} {year}" if new_year else MONTHS[month - 1]))
    if not ticks:  # a short span (or one reading, padded a day each side): its middle day
        middle = localtime.local(datetime.fromtimestamp((t_min + t_max) / 2, UTC))
        ticks.append((middle, f"{middle.day} {MONTHS[middle.month - 1]} {middle.year}"))
    return ticks
