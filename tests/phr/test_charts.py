"""Charts are plain geometry: every point inside the plot, the range band, flags."""

from __future__ import annotations

from datetime import UTC, datetime

from portal.phr.charts import Measurement, line_chart, nice_ticks, time_ticks


def _m(year: int, value: float, flagged: bool = False) -> Measurement:
    return Measurement(datetime(year, 1, 1, tzinfo=UTC), value, f"{value} in {year}", flagged)


def test_points_fall_inside_the_plot_and_newer_is_further_right() -> None:
    chart = line_chart(
        "c",
        "Glucose over time",
        [("Glucose", [_m(2020, 90), _m(2022, 130, True), _m(2021, 60)])],
        unit="mg/dL",
        band=(70, 99),
        desc="three results",
    )
    assert chart is not None
    points = chart.series[0].points
    assert [p.label for p in points] == ["90 in 2020", "60 in 2021", "130 in 2022"]
    assert points[0].x < points[1].x < points[2].x
    for p in points:
        assert chart.left <= p.x <= chart.right
        assert chart.top <= p.y <= chart.bottom
    assert points[2].flagged and chart.flagged
    assert points[2].y < points[0].y  # higher values are drawn higher
    top, bottom = chart.band or (0, 0)
    assert top < bottom
    assert chart.series[0].path.startswith("M")


def test_two_series_share_one_scale_and_get_a_legend() -> None:
    chart = line_chart(
        "bp", "Blood pressure", [("Top", [_m(2020, 120)]), ("Bottom", [_m(2020, 80)])]
    )
    assert chart is not None and chart.legend
    assert chart.series[0].points[0].y < chart.series[1].points[0].y


def test_nothing_to_plot() -> None:
    assert line_chart("x", "Empty", [("A", [])]) is None


def test_ticks_are_round_and_cover_the_values() -> None:
    ticks = nice_ticks(61.3, 187.9, 5)
    assert ticks[0] <= 61.3 and ticks[-1] >= 187.9
    assert all(t == round(t) for t in ticks)
    assert nice_ticks(5, 5, 3)[0] < 5
    years = time_ticks(
        datetime(2001, 5, 1, tzinfo=UTC).timestamp(),
        datetime(2010, 5, 1, tzinfo=UTC).timestamp(),
        4,
    )
    assert all(label.isdigit() for _, label in years)
