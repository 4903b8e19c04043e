"""What weight, height, temperature and glucose are shown in, for the person's unit system.

The conversions themselves are `portal.phr.units` (UCUM); here is only which unit each kind of
measurement is shown in, and which tests measure glucose (the one substance a patient reads
in either mass or amount: mg/dL in the US, mmol/L elsewhere).
"""

from __future__ import annotations

from typing import Any

from portal.models import UnitSystem
from portal.phr import preferences, units
from portal.phr.words import number, unit_words

# kind -> (metric unit, US unit), UCUM.
SHOWN: dict[str, tuple[str, str]] = {
    "weight": ("kg", "[lb_av]"),
    "height": ("cm", "[in_i]"),
    "temperature": ("Cel", "[degF]"),
    "glucose": ("mmol/L", "mg/dL"),
}
# LOINC codes of glucose concentrations (mass and amount, blood, serum/plasma, capillary).
GLUCOSE = frozenset(
    {
        "2339-0",  # Glucose [Mass/volume] in Blood
        "2345-7",  # ... in Serum or Plasma
        "41653-7",  # ... in Capillary blood by Glucometer
        "2341-6",  # ... in Blood by Test strip manual
        "32016-8",  # ... in Capillary blood
        "1558-6",  # Fasting glucose [Mass/volume] in Serum or Plasma
        "15074-8",  # Glucose [Moles/volume] in Blood
        "14749-6",  # ... in Serum or Plasma
        "14743-9",  # ... in Capillary blood by Glucometer
        "14771-0",  # Fasting glucose [Moles/volume] in Serum or Plasma
    }
)


def unit_for(kind: str, default: str) -> str:
    """The UCUM unit a kind of measurement is shown in (`default` for kinds not chosen)."""
    pair = SHOWN.get(kind)
    if pair is None:
        return default
    return pair[1] if preferences.current().units is UnitSystem.US else pair[0]


def substance_of(code: str | None) -> str | None:
    """What a test measures, when its concentration converts between mass and amount."""
    return "glucose" if code in GLUCOSE else None


def convert(
    value: float, from_unit: str | None, to_unit: str | None, code: str | None = None
) -> float | None:
    """`value` in `to_unit` (None when unsafe); `code` is the LOINC code of what was measured."""
    return units.convert(value, from_unit, to_unit, substance_of(code))


def lab_unit(code: str | None, unit: str | None) -> str | None:
    """The unit a lab test's results are shown in: glucose in the chosen system's, else `unit`."""
    if substance_of(code) is None:
        return unit
    shown = unit_for("glucose", unit or "")
    return shown if units.convert(1.0, unit, shown, "glucose") is not None else unit


def lab_kind(code: str | None, unit: str | None) -> str:
    """What results of a test are charted together by: units of one kind (glucose in mass
    and in amount together, when the unit is understood)."""
    substance = substance_of(code)
    if substance is not None and units.convert(1.0, unit, "mg/dL", substance) is not None:
        return f"substance:{substance}"
    return units.kind(unit)


def entry_unit(kind: str, offered: tuple[str, ...]) -> str | None:
    """The unit an entry form starts with: the chosen system's, when the form offers it."""
    if not offered:
        return None
    shown = unit_for(kind, offered[0])
    return shown if shown in offered else offered[0]


def in_chosen_units(kind: str, quantity: dict[str, Any], code: str | None = None) -> str | None:
    """A quantity (`{"value", "code"}`) in the chosen system's unit, as words, when that unit
    is another than the one it was entered in (`81.6 kg` for 180 lb); None otherwise."""
    value, unit = quantity.get("value"), quantity.get("code")
    if not isinstance(value, int | float) or isinstance(value, bool) or kind not in SHOWN:
        return None
    shown = unit_for(kind, str(unit))
    if shown == unit:
        return None
    converted = convert(float(value), str(unit), shown, code)
    return f"{number(converted)} {unit_words(shown)}" if converted is not None else None
