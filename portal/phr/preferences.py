"""How a person wants their record shown: the unit system and the time zone they chose.

The web layer sets them once per request (`shown_as`), from the signed-in account; the domain
reads them (`current()`) wherever it puts numbers or dates into words. A context variable, not
a parameter of every function: each request (and each thread preparing pages) has its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from functools import cache, cached_property
from zoneinfo import ZoneInfo, available_timezones

from portal.models import UnitSystem

UNIT_SYSTEM_WORDS = {
    UnitSystem.METRIC: "Metric (kg, cm, °C, mmol/L)",
    UnitSystem.US: "US (lb, in, °F, mg/dL)",
}
DEFAULT_ZONE = "UTC"


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def zone_names() -> list[str]:
    """Every IANA time zone this machine knows, sorted (what the account page offers)."""
    return sorted(_zones())


def valid_zone(name: object) -> str | None:
    """`name` when it is a known IANA time zone (`America/Chicago`), else None."""
    if not isinstance(name, str) or len(name) > 64:
        return None
    return name if name in _zones() else None


def unit_system(value: object) -> UnitSystem | None:
    """`value` as a unit system, None when it is none of them."""
    try:
        return UnitSystem(str(value))
    except ValueError:
        return None


@dataclass(frozen=True)
class Preferences:
    units: UnitSystem = UnitSystem.METRIC
    zone: str = DEFAULT_ZONE  # a valid IANA name

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    @property
    def key(self) -> str:
        """What a prepared page shown with these preferences is keyed by."""
        return f"{self.units.value}|{self.zone}"


DEFAULT = Preferences()
_current: ContextVar[Preferences] = ContextVar("shown_as", default=DEFAULT)


def current() -> Preferences:
    """The preferences of whoever the record is being shown to now."""
    return _current.get()


def begin(prefs: Preferences) -> Token[Preferences]:
    """Show with `prefs` until `end(token)` (for request hooks; else use `shown_as`)."""
    return _current.set(prefs)


def end(token: Token[Preferences]) -> None:
    _current.reset(token)


@contextmanager
def shown_as(prefs: Preferences) -> Iterator[Preferences]:
    """Everything put into words inside the block uses `prefs`."""
    token = _current.set(prefs)
    try:
        yield prefs
    finally:
        _current.reset(token)
