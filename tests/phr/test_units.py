"""Unit conversions are made only when they are safe without knowing the substance."""

from __future__ import annotations

import pytest

from portal.phr import units


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (100.0, "mg/dL", "g/L", 1.0),
        (1.0, "g/L", "mg/dL", 100.0),
        (2.5, "kg", "g", 2500.0),
        (220.0, "[lb_av]", "kg", 99.790321),
        (16.0, "[oz_av]", "[lb_av]", 1.0),
        (70.0, "[in_i]", "cm", 177.8),
        (7.5, "10*3/uL", "10*9/L", 7.5),
        (98.6, "[degF]", "Cel", 37.0),
        (5.0, "mmol/L", "umol/L", 5000.0),
        (60.0, "/min", "/h", 3600.0),
    ],
)
def test_safe_conversions(value: float, source: str, target: str, expected: float) -> None:
    assert units.convert(value, source, target) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("mg/dL", "mmol/L"),  # mass vs amount of substance: needs the molar mass
        ("mL/min/{1.73_m2}", "mL/min"),  # an annotation is part of what was measured
        ("%", "1"),
        ("kg", "cm"),
        ("Cel", "kg"),
        ("{score}", "%"),
        ("mg/dL", None),
        ("widgets", "gadgets"),
    ],
)
def test_unsafe_conversions_are_refused(source: str, target: str | None) -> None:
    assert units.convert(1.0, source, target) is None
    assert not units.same_kind(source, target)


def test_unknown_units_convert_only_to_themselves() -> None:
    assert units.convert(3.0, "widgets", "widgets") == 3.0
    assert units.kind("widgets") == units.kind("widgets")
    assert units.kind("mg/dL") == units.kind("g/L")
    assert units.kind("mg/dL") != units.kind("mmol/L")


def test_preferred_unit_is_the_most_common_then_the_latest() -> None:
    assert units.preferred_unit(["g/L", "mg/dL", "mg/dL"]) == "mg/dL"
    assert units.preferred_unit(["g/L", "mg/dL"]) == "g/L"
    assert units.preferred_unit([]) is None
