"""Usual ranges and flags: the clinic's first, else the built-in table by code, unit, age, sex."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from portal.phr import about_tests, ranges
from portal.phr.classify import classify
from portal.phr.ranges import Person
from tests.phr import factories as f

UCUM = "http://unitsofmeasure.org"
ADULT_MAN = Person(date(1970, 5, 1), "male")
ADULT_WOMAN = Person(date(1970, 5, 1), "female")


def result(
    code: str, value: Any, unit: str, when: str = "2024-03-01T09:00:00Z", **more: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        **more,
    }


def judge(raw: dict[str, Any], who: Person | None = ADULT_MAN) -> ranges.Flag | None:
    q = raw["valueQuantity"]
    usual = ranges.usual_range(raw, ranges.unit_of(q), None, who)
    return ranges.flag(raw, ranges.decimal(q["value"]), usual)


def usual(raw: dict[str, Any], who: Person | None = ADULT_MAN) -> ranges.Usual | None:
    return ranges.usual_range(raw, ranges.unit_of(raw["valueQuantity"]), None, who)


# ---- the clinic's range and interpretation win ---------------------------------------------


def test_the_clinics_range_wins_over_the_table() -> None:
    glucose = result("2339-0", 90, "mg/dL")  # inside the table's 70-99
    assert judge(glucose) is None
    theirs = {
        **glucose,
        "referenceRange": [
            {
                "low": {"value": 60, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
                "high": {"value": 80, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
            }
        ],
    }
    found = usual(theirs)
    assert found is not None and not found.built_in and found.source_words is None
    assert found.words() == "60\u201380 mg/dL"
    flag = judge(theirs)
    assert flag is not None and flag.words == "High" and flag.detail == "Above the usual range"


def test_the_clinics_interpretation_wins_over_any_range() -> None:
    high_potassium = result("6298-4", 6.1, "mmol/L")
    assert (flag := judge(high_potassium)) is not None and flag.words == "High"
    said_normal = {**high_potassium, "interpretation": [{"coding": [{"code": "N"}]}]}
    assert judge(said_normal) is None
    said_low = {**result("6298-4", 4.0, "mmol/L"), "interpretation": [{"coding": [{"code": "L"}]}]}
    flag = judge(said_low)
    assert flag is not None and flag.words == "Low" and flag.detail == "As marked by your clinic"


def test_the_clinics_range_for_the_patients_age() -> None:
    def band(low: int, high: int, ages: tuple[int, int]) -> dict[str, Any]:
        return {
            "low": {"value": low},
            "high": {"value": high},
            "age": {
                "low": {"value": ages[0], "code": "a"},
                "high": {"value": ages[1], "code": "a"},
            },
        }

    raw = {
        **result("6768-6", 200, "U/L"),
        "referenceRange": [band(100, 390, (1, 17)), band(44, 147, (18, 120))],
    }
    child = Person(date(2015, 1, 1), "female")
    assert (found := usual(raw, child)) is not None and found.words() == "100\u2013390 U/L"
    assert judge(raw, child) is None
    assert (found := usual(raw, ADULT_WOMAN)) is not None and found.words() == "44\u2013147 U/L"
    assert (flag := judge(raw, ADULT_WOMAN)) is not None and flag.words == "High"


# ---- the built-in table, by code and unit ----------------------------------------------------


def test_table_by_code_and_unit() -> None:
    potassium = result("6298-4", Decimal("5.3"), "mmol/L")
    found = usual(potassium)
    assert found is not None and found.built_in
    assert found.words() == "3.7\u20135.2 mmol/L"
    assert found.source_words == "a general range for adults; your clinic did not send one"
    assert (flag := judge(potassium)) is not None and (flag.words, flag.direction) == (
        "High",
        "high",
    )
    low = judge(result("6298-4", 3.6, "mmol/L"))
    assert low is not None and (low.words, low.detail) == ("Low", "Below the usual range")
    assert judge(result("6298-4", 3.7, "mmol/L")) is None  # the bounds are inside the range
    assert judge(result("6298-4", 5.2, "mmol/L")) is None
    # The same substance in SI units has a range of its own in the table.
    assert judge(result("2339-0", 6.1, "mmol/L")) is not None
    assert judge(result("2339-0", 5.0, "mmol/L")) is None


def test_a_unit_the_table_does_not_list_means_no_range_not_a_wrong_flag() -> None:
    # 2.6 mmol/L of potassium in mg/dL would be far too low: but it is not a mg/dL table.
    odd = result("6298-4", 2.6, "mg/dL")
    assert usual(odd) is None and judge(odd) is None
    assert ranges.missing_words(odd, "mg/dL") == (
        "No usual range is known for this test in mg/dL "
        "(the portal knows one for results in mmol/L)."
    )
    egfr = result("33914-3", 40, "mL/min")  # not per 1.73 m²: KDIGO's 60 does not apply
    assert usual(egfr) is None and judge(egfr) is None
    unknown = result("99999-9", 1, "mg/dL")
    assert usual(unknown) is None
    assert ranges.missing_words(unknown, "mg/dL") == "No usual range is known for this test."


def test_below_means_the_bound_itself_is_outside() -> None:
    assert (flag := judge(result("4548-4", 5.7, "%"))) is not None and flag.words == "High"
    assert judge(result("4548-4", 5.69, "%")) is None
    found = usual(result("4548-4", 5.0, "%"))
    assert found is not None and found.words() == "below 5.7 %"
    assert judge(result("2093-3", 200, "mg/dL")) is not None  # "desirable" is below 200
    assert judge(result("2093-3", 199.9, "mg/dL")) is None


def test_values_compared_as_decimals() -> None:
    assert ranges.decimal(0.1) == Decimal("0.1")
    assert ranges.decimal(5) == Decimal(5)
    assert ranges.decimal("1.030") == Decimal("1.030")
    assert ranges.decimal(True) is None and ranges.decimal("n/a") is None
    assert ranges.decimal(float("nan")) is None
    # JSON numbers arrive as binary floats: 5.2 exactly is a hair above 5.2, so a result
    # of 5.2 at the top of the range would be flagged if compared in binary.
    assert Decimal(5.2) > Decimal("5.2")  # noqa: RUF032  # the binary value is the point
    assert judge(result("6298-4", 5.2, "mmol/L")) is None
    assert judge(result("6298-4", 5.21, "mmol/L")) is not None


def test_adult_or_child_by_the_age_on_the_day_of_the_test() -> None:
    boy = Person(date(2010, 6, 15), "male")
    creatinine = "38483-4"
    as_child = result(creatinine, 0.9, "mg/dL", when="2015-06-15")
    found = usual(as_child, boy)
    assert found is not None and found.words() == "0.3\u20130.7 mg/dL"
    assert found.who == "children aged 1\u201311"
    assert (flag := judge(as_child, boy)) is not None and flag.words == "High"
    as_man = result(creatinine, 0.9, "mg/dL", when="2030-06-15")
    assert (found := usual(as_man, boy)) is not None and found.who == "men"
    assert judge(as_man, boy) is None
    # Eighteen on the day: the adult range; the day before: still a child's.
    day_before = result("6299-2", 19, "mg/dL", when="2028-06-14")
    birthday = result("6299-2", 19, "mg/dL", when="2028-06-15")
    assert judge(day_before, boy) is not None  # children: 5-18 mg/dL
    assert judge(birthday, boy) is None  # adults: 6-20 mg/dL
    # A baby: the table has no range for a newborn's blood count, and says so.
    baby = Person(date(2024, 2, 20), "female")
    assert usual(result("6690-2", 25, "10*3/uL"), baby) is None


def test_sex_when_the_range_differs_and_a_shared_one_when_unknown() -> None:
    hemoglobin = result("718-7", 12.5, "g/dL")
    assert judge(hemoglobin, ADULT_WOMAN) is None
    assert (flag := judge(hemoglobin, ADULT_MAN)) is not None and flag.words == "Low"
    unknown = Person(date(1970, 1, 1), None)
    assert (found := usual(hemoglobin, unknown)) is not None and found.who == "adults"
    assert (found.low, found.high) == (Decimal("11.6"), Decimal("16.6"))
    assert usual(result("2857-1", 2.0, "ng/mL"), ADULT_WOMAN) is None  # PSA: men only


def test_no_birth_date_means_the_adult_range_said_as_such() -> None:
    found = usual(result("718-7", 12.5, "g/dL"), Person(None, "female"))
    assert found is not None and found.who == "women"


def test_coded_urine_results() -> None:
    def strip(code: str, snomed: str, display: str) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueCodeableConcept": {
                "coding": [{"system": "http://snomed.info/sct", "code": snomed, "display": display}]
            },
        }

    protein = strip("20454-5", "167275009", "Urine protein test = + (finding)")
    found = ranges.usual_range(protein, None, None, ADULT_WOMAN)
    assert found is not None and found.words() == "usually negative"
    flag = ranges.flag(protein, None, found)
    assert flag is not None and (flag.words, flag.detail) == (
        "Not the usual result",
        "Usually negative",
    )
    nitrite = strip("5802-4", "314138001", "Urine nitrite negative (finding)")
    assert ranges.flag(nitrite, None, ranges.usual_range(nitrite, None, None, ADULT_WOMAN)) is None


# ---- blood pressure --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("top", "bottom", "category"),
    [
        (119, 79, "normal"),
        (Decimal("119.9"), Decimal("79.9"), "normal"),
        (120, 79, "elevated"),
        (129, 79, "elevated"),
        (130, 79, "stage-1"),
        (119, 80, "stage-1"),
        (139, 89, "stage-1"),
        (140, 60, "stage-2"),
        (125, 90, "stage-2"),
        (180, 120, "stage-2"),
        (181, 80, "crisis"),
        (150, 121, "crisis"),
    ],
)
def test_blood_pressure_categories_at_each_boundary(
    top: int | Decimal, bottom: int | Decimal, category: str
) -> None:
    found = ranges.bp_category(Decimal(top), Decimal(bottom))
    assert found is not None and found.key == category
    assert found.words == ranges.BP_CATEGORIES[category]


def test_blood_pressure_needs_both_numbers() -> None:
    assert ranges.bp_category(Decimal(150), None) is None
    assert ranges.bp_category(None, Decimal(95)) is None


# ---- the table covers the shared Synthea data ------------------------------------------------


def _shared_lab_results() -> list[tuple[Person, dict[str, Any]]]:
    """Every lab result of the shared Synthea bundles, with its patient's birth date and sex."""
    found = []
    for path in sorted(f.SHARED.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        resources = [entry["resource"] for entry in data.get("entry") or []]
        patient = next((r for r in resources if r["resourceType"] == "Patient"), None)
        if patient is None:
            continue  # the folder's manifest
        who = Person(date.fromisoformat(patient["birthDate"]), patient.get("gender"))
        for resource in resources:
            if resource["resourceType"] == "Observation" and classify(resource).category == "labs":
                found.append((who, resource))
    return found


def _loinc(resource: dict[str, Any]) -> str | None:
    return next(
        (c["code"] for c in resource["code"]["coding"] if c.get("system") == "http://loinc.org"),
        None,
    )


def test_the_table_covers_the_60_most_frequent_lab_codes_of_the_shared_synthea_data() -> None:
    results = _shared_lab_results()
    assert len(results) > 1000
    counts = Counter(code for _, r in results if (code := _loinc(r)))
    frequent = [code for code, _ in counts.most_common(60)]
    assert len(frequent) == min(60, len(counts))
    missing = [code for code in frequent if code not in ranges.TABLE]
    assert missing == []
    no_words = [code for code in frequent if about_tests.about(code) is None]
    assert no_words == []
    # Their results get a range, but for those in a unit the table does not list (an eGFR
    # in mL/min, not per 1.73 m²) and children's where the table has none for their age.
    unranged = []
    for who, r in results:
        unit = ranges.unit_of(r["valueQuantity"]) if "valueQuantity" in r else None
        if ranges.usual_range(r, unit, None, who) is None:
            unranged.append(r)
            entry = ranges.TABLE[_loinc(r) or ""]
            age = ranges.age_on(who.born, ranges.day_of(r, None))
            assert unit not in entry.units or (age is not None and age < ranges.ADULT)
    assert len(unranged) / len(results) < 0.05


def test_the_table_is_well_formed() -> None:
    assert len(ranges.TABLE) >= 60
    for code, entry in ranges.TABLE.items():
        assert entry.units or entry.usual, code
        for unit, intervals in entry.units.items():
            assert intervals, (code, unit)
            for interval in intervals:
                assert interval.low is not None or interval.high is not None, code
                if interval.low is not None and interval.high is not None:
                    assert interval.low < interval.high, code
                start, end = interval.ages
                assert end is None or start < end, code


@pytest.mark.parametrize(
    ("celsius", "words"),
    [("36.0", "Low"), ("36.1", None), ("37.3", None), ("37.9", None), ("38.0", "High")],
)
def test_a_temperature_is_high_from_a_fever_on(celsius: str, words: str | None) -> None:
    usual = ranges.built_in(ranges.VITALS["temperature"], "Cel", 40, "female")
    flag = ranges.flag({}, Decimal(celsius), usual)
    assert (flag.words if flag else None) == words
