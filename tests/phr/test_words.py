"""FHIR elements in plain words."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from portal.phr import words
from portal.phr.preferences import Preferences, shown_as


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("asked-unknown", "Not recorded (asked but unknown)"),
        ("asked-declined", "Not recorded (you chose not to say)"),
        ("not-performed", "Not done"),
        ("masked", "Hidden by your clinic"),
    ],
)
def test_data_absent_reason(code: str, expected: str) -> None:
    observation = {"dataAbsentReason": {"coding": [{"code": code}]}}
    assert words.absent_reason(observation) == expected


def test_data_absent_reason_extension_on_a_primitive() -> None:
    patient = {
        "_birthDate": {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                    "valueCode": "asked-unknown",
                }
            ]
        }
    }
    assert words.absent_reason(patient, "birthDate") == "Not recorded (asked but unknown)"
    assert words.absent_reason({}) is None


def test_concepts_lose_snomed_semantic_tags() -> None:
    assert words.concept_text({"text": "Hypertension (disorder)"}) == "Hypertension"
    assert words.concept_text({"coding": [{"display": "Colonoscopy (procedure)"}]}) == "Colonoscopy"
    assert words.concept_text({"text": "Knee (left)"}) == "Knee (left)"


def test_quantities_and_units_in_words() -> None:
    q = {"value": 120.43, "unit": "mm[Hg]", "code": "mm[Hg]"}
    assert words.quantity_text(q) == "120 mmHg"
    assert words.quantity_text({"value": 5.4321, "code": "mmol/L"}) == "5.43 mmol/L"
    assert words.quantity_text({"value": 3, "code": "{score}"}) == "3"
    assert words.quantity_text({"value": 5, "comparator": "<", "code": "mg/dL"}) == "<5 mg/dL"
    assert words.quantity_text({"value": 7.2, "unit": "10*3/uL", "code": "10*3/uL"}) == (
        "7.2 \u00d710³/µL"
    )


def test_dates_on_the_patients_calendar() -> None:
    # A moment is on the patient's day (UTC by default), whatever offset it was written with.
    assert words.date_text("2023-03-04T23:30:00-05:00") == "5 Mar 2023"
    with shown_as(Preferences(zone="America/New_York")):
        assert words.date_text("2023-03-04T23:30:00-05:00") == "4 Mar 2023"
        assert words.date_text("2023-03-05") == "5 Mar 2023"  # a date only: never shifted
    assert words.date_text("2023-03") == "Mar 2023"
    assert words.date_text("2023") == "2023"
    assert words.date_text("nonsense") is None
    assert words.period_text({"start": "2020-01-01"}) == "since 1 Jan 2020"


def test_ages_of_children_and_adults() -> None:
    today = date(2024, 6, 15)
    assert words.age_text(date(1980, 6, 16), today) == "43"
    assert words.age_text(date(2023, 3, 1), today) == "15 months"
    assert words.age_text(date(2024, 6, 1), today) == "2 weeks"


def test_time_ago() -> None:
    now = datetime(2024, 6, 15, 12, tzinfo=UTC)
    assert words.ago_text(datetime(2024, 6, 12, 12, tzinfo=UTC), now) == "3 days ago"
    assert words.ago_text(now, now) == "just now"


def test_dosage_in_a_sentence() -> None:
    dosage = {
        "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
        "route": {"text": "Oral"},
    }
    assert words.dosage_text(dosage) == "Take 1 tablet, twice a day, oral"
    assert words.dosage_text({"asNeededBoolean": True}) == "When needed"
    assert words.dosage_text({"text": "One at night"}) == "One at night"


def test_synthea_names_lose_their_digits() -> None:
    assert words.person_name([{"given": ["Vito794"], "family": "Feeney44"}]) == "Vito794 Feeney44"
    assert words.clean_name("Feeney44") == "Feeney"
    assert words.clean_name("O'Kon") == "O'Kon"


def test_lab_names_without_loinc_parts() -> None:
    assert words.lab_name("MCHC [Mass/volume] by Automated count") == "MCHC"
    assert (
        words.lab_name("Platelets [#/volume] in Blood by Automated count") == "Platelets in Blood"
    )
    assert words.lab_name("Glucose") == "Glucose"
