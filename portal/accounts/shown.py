"""A person's choice of how their record is shown: unit system and time zone.

The zone comes from the browser at each sign-in until the person chooses one on the account
page; then theirs stays. Anything not a known IANA zone or unit system is ignored.
"""

from __future__ import annotations

from portal.models import Account, UnitSystem
from portal.phr.preferences import Preferences, unit_system, valid_zone


def preferences_of(
    account: Account | None, default_units: str = "metric", default_zone: str = "UTC"
) -> Preferences:
    """How `account`'s record is shown to them (the defaults for what they have not given)."""
    fallback_units = unit_system(default_units) or UnitSystem.METRIC
    fallback_zone = valid_zone(default_zone) or "UTC"
    if account is None:
        return Preferences(fallback_units, fallback_zone)
    return Preferences(
        unit_system(account.units) or fallback_units,
        valid_zone(account.time_zone) or fallback_zone,
    )


def browser_zone(account: Account, name: object) -> bool:
    """The zone the browser reported at sign-in, kept unless the person chose one; an unknown
    or missing zone changes nothing. True when the account's zone changed."""
    zone = valid_zone(name)
    if zone is None or account.time_zone_chosen or account.time_zone == zone:
        return False
    account.time_zone = zone
    return True


def choose(account: Account, units: object, zone: object) -> bool:
    """What the person chose on the account page; False (nothing changed) when either is
    not a unit system or a known zone."""
    system, valid = unit_system(units), valid_zone(zone)
    if system is None or valid is None:
        return False
    account.units = system
    account.time_zone = valid
    account.time_zone_chosen = True
    return True
