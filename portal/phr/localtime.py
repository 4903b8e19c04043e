"""Dates and times in the patient's own time zone.

A FHIR dateTime with a time is a moment: it is shown on the patient's calendar day, at their
clock time, whatever offset the clinic wrote it with, so two things done at the same moment
show the same date on every page. A FHIR date (`2020-05-17`, a birth date, an onset date) is
a calendar day, never shifted. The zone is the one of `preferences.current()`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from portal.phr import preferences


def moment(value: object) -> datetime | None:
    """A FHIR dateTime that has a time and an offset, as an aware datetime (else None)."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else None
    if not isinstance(value, str) or len(value) <= 10 or "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def local(at: datetime) -> datetime:
    """An aware moment on the patient's clock."""
    return at.astimezone(preferences.current().tz)


def day_of(value: datetime) -> date:
    """The patient's calendar day of a stored moment.

    Stored moments made from a FHIR date are midnight UTC exactly (`classify.parse_datetime`):
    those are days, kept as they are; every other moment is on the patient's calendar."""
    at = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    at_utc = at.astimezone(UTC)
    if at_utc.timetz().replace(tzinfo=None) == time(0):
        return at_utc.date()
    return local(at).date()


def local_day(value: object) -> date | None:
    """The patient's calendar day of a FHIR dateTime string with a time (None otherwise)."""
    found = moment(value) if isinstance(value, str) else None
    return local(found).date() if found is not None else None


def time_text(at: datetime) -> str:
    """The patient's clock time of a moment, as `22:30`."""
    return local(at).strftime("%H:%M")


def today(now: datetime) -> date:
    """The patient's date at `now` (their day ends at their midnight, not UTC's)."""
    return local(now).date()


def now_on_their_clock(now: datetime) -> tuple[datetime, int]:
    """(`now` on the patient's clock without zone, the browser-style offset in minutes:
    minutes to add to local time to get UTC) for a form's `when` and `tz` fields."""
    at = local(now)
    offset = at.utcoffset() or timedelta(0)
    return at.replace(tzinfo=None, second=0, microsecond=0), -int(offset.total_seconds() // 60)
