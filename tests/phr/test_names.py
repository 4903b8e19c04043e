"""Plain words, one rule at a time: names in their own case, medicines as a label reads,
categories never as codes, periods and own entries as a person says them, decimals as sent."""

from __future__ import annotations

from decimal import Decimal

import jinja2
import pytest

from portal import fhirjson
from portal.phr.names import (
    category_text,
    coded_as,
    first_capital,
    is_shouted,
    medicine_name,
    phone_text,
    plain_case,
    title_case,
)
from portal.phr.own import own_medicine_words, reaction_words
from portal.phr.words import number, period_text, quantity_text, value_text

# ---- clinic and organisation names ---------------------------------------------------------


@pytest.mark.parametrize(
    ("shouted", "plain"),
    [
        ("RIVERSIDE MEDICAL CENTER", "Riverside Medical Center"),
        ("HANOVER FAMILY HEALTH AND URGENT CARE", "Hanover Family Health and Urgent Care"),
        (
            "SAINTS WALK-IN MEDICAL CENTER - URGENT CARE AND OCCUPATIONAL HEALTH",
            "Saints Walk-in Medical Center - Urgent Care and Occupational Health",
        ),
        ("NEWTON-WELLESLEY HOSPITAL", "Newton-Wellesley Hospital"),
        ("ST ELIZABETH'S MEDICAL CENTER", "St Elizabeth's Medical Center"),
        (
            "LAHEY HOSPITAL & MEDICAL CENTER, BURLINGTON",
            "Lahey Hospital & Medical Center, Burlington",
        ),
        ("THE CENTER FOR SPORTS MEDICINE", "The Center for Sports Medicine"),
        ("SMITH FAMILY PRACTICE LLC", "Smith Family Practice LLC"),
        ("UMASS MEMORIAL ICU", "UMASS Memorial ICU"),
        ("66B CONCORD STREET", "66B Concord Street"),
        ("3RD AVENUE CLINIC", "3rd Avenue Clinic"),
        ("100 MAIN STREET, SUITE B", "100 Main Street, Suite B"),
    ],
)
def test_a_name_in_capitals_becomes_a_title(shouted: str, plain: str) -> None:
    assert is_shouted(shouted)
    assert title_case(shouted) == plain
    assert plain_case(shouted) == plain


@pytest.mark.parametrize("name", ["Springfield Vet Center", "McLean Hospital", "iCare Clinic", "X"])
def test_a_name_in_its_own_case_is_left_as_it_is(name: str) -> None:
    assert not is_shouted(name)
    assert plain_case(name) == name


def test_phone_numbers_are_grouped() -> None:
    assert phone_text("9789376000") == "978-937-6000"
    assert phone_text("1-978-937-6000") == "978-937-6000"
    assert phone_text("(978) 937 6000") == "978-937-6000"
    assert phone_text("+44 20 7946 0958") == "+44 20 7946 0958"  # not ours to regroup
    assert phone_text("ask at the desk") == "ask at the desk"


# ---- medicines ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rxnorm", "label"),
    [
        (
            "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
            "Albuterol 0.09 mg/actuation inhaler",
        ),
        ("Acetaminophen 325 MG Oral Tablet", "Acetaminophen 325 mg oral tablet"),
        (
            "24 HR metoprolol succinate 100 MG Extended Release Oral Tablet [Toprol]",
            "Metoprolol succinate 100 mg 24-hour extended-release oral tablet (Toprol)",
        ),
        (
            "0.25 ML Leuprolide Acetate 30 MG/ML Prefilled Syringe",
            "Leuprolide acetate 30 mg/mL prefilled syringe (0.25 mL)",
        ),
        (
            "NDA020800 0.3 ML Epinephrine 1 MG/ML Auto-Injector",
            "Epinephrine 1 mg/mL auto-injector (0.3 mL)",
        ),
        (
            "Acetaminophen 325 MG / oxyCODONE Hydrochloride 5 MG Oral Tablet",
            "Acetaminophen 325 mg / oxycodone hydrochloride 5 mg oral tablet",
        ),
        ("1 ML DOCEtaxel 20 MG/ML Injection", "Docetaxel 20 mg/mL injection (1 mL)"),
        (
            "insulin human, isophane 70 UNT/ML / Regular Insulin, Human 30 UNT/ML Injectable "
            "Suspension [Humulin]",
            "Insulin human, isophane 70 units/mL / regular Insulin, Human 30 units/mL "
            "injectable suspension (Humulin)",
        ),
        ("Ortho Tri-Cyclen 28 Day Pack", "Ortho Tri-Cyclen 28 day pack"),
        (
            "NuvaRing 0.12/0.015 MG per 24HR 21 Day Vaginal Ring",
            "NuvaRing 0.12/0.015 mg per 24 hours 21 day vaginal ring",
        ),
        ("Lasix 40mg", "Lasix 40mg"),
        ("Metformin 500 mg tablet", "Metformin 500 mg tablet"),
    ],
)
def test_a_medicine_reads_as_its_label(rxnorm: str, label: str) -> None:
    assert medicine_name(rxnorm) == label


def test_the_rxnorm_coding_is_kept_for_the_details() -> None:
    concept = {
        "coding": [
            {
                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "745679",
                "display": "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
            }
        ],
        "text": "Ventolin inhaler",
    }
    assert coded_as(concept) == (
        "As your clinic wrote it: Ventolin inhaler",
        "RxNorm 745679: 200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
    )
    assert coded_as({"text": "Aspirin"}) == ("As your clinic wrote it: Aspirin",)
    assert coded_as(None) == ()


# ---- codes are never words --------------------------------------------------------------------

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


@pytest.mark.parametrize(
    ("category", "words"),
    [
        ({"coding": [{"system": CATEGORY, "code": "vital-signs"}]}, "Vital signs"),
        ([{"coding": [{"code": "vital-sign"}]}], "Vital signs"),  # Synthea's spelling
        ([{"coding": [{"code": "laboratory"}]}], "Lab results"),
        ([{"coding": [{"code": "clinical-note"}]}], "Clinical note"),
        ([{"coding": [{"code": "clinical-note", "display": "Clinical Note"}]}], "Clinical Note"),
        ({"text": "Cardiology letters"}, "Cardiology letters"),
        ([{"coding": [{"code": "38341003"}]}], None),  # a bare code: no words at all
        ({"code": "RAD"}, "Imaging"),
        (None, None),
    ],
)
def test_a_category_is_words_never_its_code(category: object, words: str | None) -> None:
    assert category_text(category) == words


# ---- dates -------------------------------------------------------------------------------------


def test_a_period_that_starts_a_line_keeps_its_month_capitalised() -> None:
    since = period_text({"start": "1963-05-21"})
    assert since == "since 21 May 1963"
    assert first_capital(since) == "Since 21 May 1963"
    # What the care plans page used to do: Jinja's capitalize lowers every other letter.
    assert jinja2.Template("{{ p | capitalize }}").render(p=since) == "Since 21 may 1963"
    assert first_capital(None) is None


# ---- the patient's own entries ----------------------------------------------------------------


def test_an_own_medicine_is_taken_since_the_day_given() -> None:
    assert own_medicine_words({"authoredOn": "1963-05-21"}, True) == "You take it since 21 May 1963"
    assert own_medicine_words({"authoredOn": "1963-05-21"}, False) == "You took it from 21 May 1963"
    # No day given: the entry is dated with the moment it was added, and says so.
    added = {"authoredOn": "2026-03-04T08:30:00+00:00"}
    assert own_medicine_words(added, True) == "You take it (added 4 Mar 2026)"
    assert own_medicine_words({}, True) == "You take it"


def test_an_own_allergy_says_the_reaction_and_its_severity() -> None:
    raw = {"reaction": [{"manifestation": [{"text": "Hives"}], "severity": "moderate"}]}
    assert reaction_words(raw) == "Hives (moderate)"
    assert reaction_words({"reaction": [{"manifestation": [{"text": "Hives"}]}]}) == "Hives"
    assert reaction_words({"reaction": [{"severity": "severe"}]}) == "A severe reaction"
    assert reaction_words({}) is None


# ---- decimals as the clinic sent them ---------------------------------------------------------


def test_fhir_decimals_keep_their_digits_through_json() -> None:
    text = '{"value":5.10,"whole":5,"fine":0.100,"noise":81.55123456789012,"big":1.5e2}'
    parsed = fhirjson.loads(text)
    assert isinstance(parsed["value"], float) and parsed["value"] == 5.1
    assert parsed["value"].text == "5.10" and parsed["value"].places == 2
    assert isinstance(parsed["whole"], int)
    assert fhirjson.dumps(parsed) == text
    assert fhirjson.places_of(parsed["big"]) == 0
    assert fhirjson.places_of(Decimal("2.50")) == 2
    assert fhirjson.places_of(2.5) is None  # a float: its written digits are gone
    assert fhirjson.dumps({"a": Decimal("2.50")}) == '{"a":2.50}'


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("5.10", "5.10"),
        ("5", "5"),
        ("5.0", "5.0"),
        ("0.100", "0.100"),
        ("1200.50", "1,200.50"),
        ("-0.0", "0.0"),
        ("81.55123456789012", "81.6"),  # a computed float: no false precision
        ("0.93812345678", "0.938"),
    ],
)
def test_a_number_is_shown_as_precisely_as_it_was_sent(sent: str, shown: str) -> None:
    value = fhirjson.loads(sent)
    assert number(value) == shown
    assert quantity_text({"value": value, "unit": "mmol/L"}) == f"{shown} mmol/L"


def test_a_plain_float_keeps_the_old_rounding() -> None:
    assert number(5.1) == "5.1" and number(2.0) == "2" and number(81.551) == "81.6"


def test_an_observation_value_keeps_its_trailing_zero() -> None:
    observation = fhirjson.loads(
        '{"valueQuantity":{"value":5.10,"unit":"mmol/L","system":"http://unitsofmeasure.org",'
        '"code":"mmol/L"}}'
    )
    assert value_text(observation) == "5.10 mmol/L"
