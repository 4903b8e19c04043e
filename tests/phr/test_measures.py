"""Weight, height, temperature and glucose in the units the patient chose (portal.phr.measures),
converted by the UCUM table (portal.phr.units)."""

from __future__ import annotations

import pytest

from portal.models import UnitSystem
from portal.phr import measures, units
from portal.phr.entries.catalog import MEASURE_BY_KEY
from portal.phr.preferences import Preferences, shown_as

US = Preferences(units=UnitSystem.US)
METRIC = Preferences(units=UnitSystem.METRIC)


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (180, "[lb_av]", "kg", 81.6466266),
        (81.6466266, "kg", "[lb_av]", 180),
        (69, "[in_i]", "cm", 175.26),
        (175.26, "cm", "[in_i]", 69),
        (98.6, "[degF]", "Cel", 37),
        (37, "Cel", "[degF]", 98.6),
    ],
)
def test_conversions_by_the_ucum_table(
    value: float, source: str, target: str, expected: float
) -> None:
    assert units.convert(value, source, target) == pytest.approx(expected)


def test_glucose_converts_between_mass_and_amount_only_as_glucose() -> None:
    assert units.convert(100, "mg/dL", "mmol/L", "glucose") == pytest.approx(5.5507, rel=1e-4)
    assert units.convert(5.5507, "mmol/L", "mg/dL", "glucose") == pytest.approx(100, rel=1e-4)
    assert units.convert(1, "g/L", "mmol/L", "glucose") == pytest.approx(5.5507, rel=1e-4)
    assert units.convert(100, "mg/dL", "mmol/L") is None  # which substance? never guessed
    assert units.convert(100, "mg/dL", "mmol/L", "cholesterol") is None
    assert units.convert(100, "mg/dL", "mmol", "glucose") is None  # not a concentration
    assert measures.convert(100, "mg/dL", "mmol/L", "2339-0") == pytest.approx(5.5507, rel=1e-4)
    assert measures.convert(100, "mg/dL", "mmol/L", "2093-3") is None  # cholesterol


def test_each_kind_is_shown_in_the_chosen_systems_unit() -> None:
    shown = {}
    for prefs in (METRIC, US):
        with shown_as(prefs):
            shown[prefs.units] = [
                measures.unit_for(k, "x") for k in ("weight", "height", "temperature", "glucose")
            ]
            assert measures.unit_for("heart-rate", "/min") == "/min"  # not a choice
    assert shown[UnitSystem.METRIC] == ["kg", "cm", "Cel", "mmol/L"]
    assert shown[UnitSystem.US] == ["[lb_av]", "[in_i]", "[degF]", "mg/dL"]


def test_lab_glucose_in_the_chosen_unit_other_tests_as_sent() -> None:
    with shown_as(METRIC):
        assert measures.lab_unit("2339-0", "mg/dL") == "mmol/L"
        assert measures.lab_unit("2093-3", "mg/dL") == "mg/dL"  # cholesterol: as sent
        assert measures.lab_unit("2339-0", "mg/dl (odd)") == "mg/dl (odd)"  # not understood
    with shown_as(US):
        assert measures.lab_unit("15074-8", "mmol/L") == "mg/dL"
    assert measures.lab_kind("2339-0", "mg/dL") == measures.lab_kind("2339-0", "mmol/L")
    assert measures.lab_kind("2093-3", "mg/dL") != measures.lab_kind("2093-3", "mmol/L")


def test_a_value_in_the_other_system_is_also_said_in_the_chosen_one() -> None:
    lb = {"value": 180, "code": "[lb_av]"}
    with shown_as(METRIC):
        assert measures.in_chosen_units("weight", lb) == "81.6 kg"
        assert measures.in_chosen_units("weight", {"value": 80, "code": "kg"}) is None
        assert measures.in_chosen_units("temperature", {"value": 98.6, "code": "[degF]"}) == (
            "37 °C"
        )
    with shown_as(US):
        assert measures.in_chosen_units("weight", lb) is None  # entered in lb: shown in lb


def test_entry_forms_start_in_the_chosen_unit_and_check_ranges_by_the_table() -> None:
    weight = MEASURE_BY_KEY["weight"]
    with shown_as(US):
        assert measures.entry_unit("weight", weight.unit_codes) == "[lb_av]"
        assert measures.entry_unit("heart-rate", ("/min",)) == "/min"
    with shown_as(METRIC):
        assert measures.entry_unit("weight", weight.unit_codes) == "kg"
    lb = weight.unit("[lb_av]")
    assert lb is not None and lb.to_base(180) == pytest.approx(81.6466266)
    fahrenheit = MEASURE_BY_KEY["temperature"].unit("[degF]")
    assert fahrenheit is not None and fahrenheit.to_base(98.6) == pytest.approx(37)
    mmol = MEASURE_BY_KEY["glucose"].unit("mmol/L")
    assert mmol is not None and mmol.to_base(5.5507) == pytest.approx(100, rel=1e-4)
