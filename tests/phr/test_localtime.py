"""Dates and times on the patient's own calendar and clock (portal.phr.localtime)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from portal.phr import charts, localtime, preferences, words
from portal.phr.classify import parse_datetime
from portal.phr.preferences import Preferences, shown_as

CHICAGO = Preferences(zone="America/Chicago")
# 22:30 in Chicago on 4 March 2026 (CST, UTC-6) is 04:30 UTC on 5 March.
RESULT_AT = "2026-03-05T04:30:00Z"
ENTRY_AT = "2026-03-04T22:30:00-06:00"  # the patient's own entry, at the same moment


def test_a_result_after_utc_midnight_shows_the_chicago_date() -> None:
    with shown_as(CHICAGO):
        assert words.date_text(RESULT_AT) == "4 Mar 2026"
        assert words.date_text(parse_datetime(RESULT_AT)) == "4 Mar 2026"  # a stored moment
        assert localtime.time_text(parse_datetime(RESULT_AT)) == "22:30"  # type: ignore[arg-type]
    assert words.date_text(RESULT_AT) == "5 Mar 2026"  # the same moment on UTC's calendar


def test_entries_made_at_the_same_moment_show_the_same_date() -> None:
    written = [RESULT_AT, ENTRY_AT, "2026-03-05T05:30:00+01:00", "2026-03-04T23:30:00-05:00"]
    for prefs in (CHICAGO, Preferences(zone="Asia/Tokyo"), Preferences(zone="UTC")):
        with shown_as(prefs):
            assert len({words.date_text(w) for w in written}) == 1, prefs
            assert len({words.parse_date(w) for w in written}) == 1, prefs
    with shown_as(Preferences(zone="Asia/Tokyo")):
        assert words.date_text(ENTRY_AT) == "5 Mar 2026"  # 13:30 in Tokyo


def test_dates_that_are_only_dates_are_not_shifted() -> None:
    with shown_as(Preferences(zone="Pacific/Honolulu")):
        assert words.date_text("2020-05-17") == "17 May 2020"  # an onset date
        assert words.parse_date("1910-09-19") == date(1910, 9, 19)  # a birth date
        assert words.date_text("2020-05") == "May 2020"
        assert words.period_text({"start": "2020-05-17", "end": "2020-05-18"}) == (
            "17 May 2020 \u2013 18 May 2020"
        )
        # A date stored as a moment (midnight UTC, how classify keeps a date) stays its day.
        assert words.date_text(parse_datetime("2020-05-17")) == "17 May 2020"
    with shown_as(Preferences(zone="Asia/Tokyo")):
        assert words.date_text(parse_datetime("2020-05-17")) == "17 May 2020"


def test_the_patients_today_and_the_forms_now() -> None:
    now = datetime(2026, 3, 5, 4, 30, tzinfo=UTC)
    with shown_as(CHICAGO):
        assert localtime.today(now) == date(2026, 3, 4)
        assert localtime.now_on_their_clock(now) == (datetime(2026, 3, 4, 22, 30), 360)
    with shown_as(Preferences(zone="Europe/Paris")):
        assert localtime.now_on_their_clock(now) == (datetime(2026, 3, 5, 5, 30), -60)


def test_chart_ticks_start_the_year_at_the_patients_midnight() -> None:
    start = datetime(2023, 6, 1, tzinfo=UTC).timestamp()
    new_year_in_utc = datetime(2026, 1, 1, 3, tzinfo=UTC).timestamp()  # still 2025 in Chicago
    with shown_as(CHICAGO):
        ticks = charts.time_ticks(start, new_year_in_utc, 4)
        assert [label for _, label in ticks] == ["2024", "2025"]
        assert ticks[0][0] == datetime(2024, 1, 1, 6, tzinfo=UTC)  # midnight in Chicago
    in_utc = charts.time_ticks(start, new_year_in_utc, 4)
    assert [label for _, label in in_utc] == ["2024", "2025", "2026"]


def test_only_known_zones_and_unit_systems_are_accepted() -> None:
    assert preferences.valid_zone("America/Chicago") == "America/Chicago"
    for nonsense in ("Mars/Olympus", "../../etc/passwd", "", None, 5, "America/" + "x" * 80):
        assert preferences.valid_zone(nonsense) is None
    assert preferences.unit_system("us") is preferences.UnitSystem.US
    assert preferences.unit_system("imperial") is None
    assert "America/Chicago" in preferences.zone_names()


def test_the_preferences_of_a_block_end_with_it() -> None:
    assert preferences.current() == preferences.DEFAULT
    with shown_as(CHICAGO):
        assert preferences.current().tz.key == "America/Chicago"
    assert preferences.current() == preferences.DEFAULT
