"""Plain words on the pages that show them: medicines as labels (their coding under Details),
clinics in their own case, periods with capitalised months, categories never as codes,
decimals as sent, the patient's own medicines and allergies in their words."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal import fhirjson
from portal.extensions import db
from tests.phr import factories as f
from tests.sessions import begin

PATIENT = "Patient/p1"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ALBUTEROL = "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"


def words(page: str) -> str:
    """What a reader sees outside "Details" elements."""
    page = re.sub(r"<details\b.*?</details>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def details(page: str) -> str:
    return " ".join(
        " ".join(html.unescape(re.sub(r"<[^>]+>", " ", d)).split())
        for d in re.findall(r"<details\b.*?</details>", page, flags=re.S)
    )


def resources() -> list[dict[str, Any]]:
    org = {
        "resourceType": "Organization",
        "id": "org1",
        "name": "RIVERSIDE MEDICAL CENTER",
        "telecom": [{"system": "phone", "value": "9789376000"}],
        "address": [{"line": ["295 VARNUM AVENUE"], "city": "LOWELL", "state": "MA"}],
    }
    visit = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "AMB"},
        "type": [{"text": "Check-up"}],
        "subject": {"reference": PATIENT},
        "period": {"start": "2020-05-17T10:00:00Z", "end": "2020-05-17T10:30:00Z"},
        "serviceProvider": {"reference": "Organization/org1", "display": org["name"]},
    }
    medicine = {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": PATIENT},
        "encounter": {"reference": "Encounter/e1"},
        "authoredOn": "2020-05-17",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "745679", "display": ALBUTEROL}],
            "text": ALBUTEROL,
        },
    }
    plan = {
        "resourceType": "CarePlan",
        "id": "cp1",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": PATIENT},
        "category": [{"coding": [{"code": "assess-plan"}], "text": "Asthma self management"}],
        "period": {"start": "1963-05-21"},
    }
    team = {
        "resourceType": "CareTeam",
        "id": "ct1",
        "status": "active",
        "subject": {"reference": PATIENT},
        "period": {"start": "1963-05-21"},
        "participant": [{"member": {"reference": "Organization/org1"}}],
    }
    note = {
        "resourceType": "DocumentReference",
        "id": "d1",
        "status": "current",
        "subject": {"reference": PATIENT},
        "category": [{"coding": [{"code": "clinical-note"}]}],
        "type": {"text": "Progress note"},
        "date": "2020-05-17T10:00:00Z",
        "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}],
    }
    return [org, visit, medicine, plan, team, note, *measured()]


def measured() -> list[dict[str, Any]]:
    """A potassium of 5.10 and 5 mmol/L and a weight of 70.50 kg, read as an EHR sends them."""
    text = """[
      {"resourceType": "Observation", "id": "k1", "status": "final",
       "category": [{"coding": [{"code": "laboratory"}]}],
       "code": {"coding": [{"system": "http://loinc.org", "code": "6298-4",
                            "display": "Potassium [Moles/volume] in Blood"}]},
       "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2020-05-17",
       "valueQuantity": {"value": 5.10, "unit": "mmol/L",
                         "system": "http://unitsofmeasure.org", "code": "mmol/L"}},
      {"resourceType": "Observation", "id": "k2", "status": "final",
       "category": [{"coding": [{"code": "laboratory"}]}],
       "code": {"coding": [{"system": "http://loinc.org", "code": "6298-4",
                            "display": "Potassium [Moles/volume] in Blood"}]},
       "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2019-05-17",
       "valueQuantity": {"value": 5, "unit": "mmol/L",
                         "system": "http://unitsofmeasure.org", "code": "mmol/L"}},
      {"resourceType": "Observation", "id": "w1", "status": "final",
       "category": [{"coding": [{"code": "vital-signs"}]}],
       "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7",
                            "display": "Body Weight"}]},
       "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2020-05-17",
       "valueQuantity": {"value": 70.50, "unit": "kg",
                         "system": "http://unitsofmeasure.org", "code": "kg"}}
    ]"""
    parsed: list[dict[str, Any]] = fhirjson.loads(text)
    return parsed


@pytest.fixture
def record(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        account = f.make_account(db.session, "Ana Lima")
        connection = f.make_connection(db.session, account)
        f.add_resources(db.session, connection, resources())
        db.session.commit()
        account_id = account.id
    with client.session_transaction() as s:
        begin(s, account_id)


def test_a_medicine_reads_as_its_label_with_its_rxnorm_name_under_details(
    client: FlaskClient, record: None
) -> None:
    for path in ("/records/medications", "/records/", "/records/visits"):
        page = client.get(path).text
        assert "Albuterol 0.09 mg/actuation inhaler" in words(page), path
        assert "ACTUAT" not in words(page), path
    page = client.get("/records/medications").text
    assert f"RxNorm 745679: {ALBUTEROL}" in details(page)


def test_clinics_are_named_in_their_own_case(client: FlaskClient, record: None) -> None:
    visits = words(client.get("/records/visits").text)
    assert "At Riverside Medical Center" in visits
    team = words(client.get("/records/care-team").text)
    assert "Riverside Medical Center" in team and "295 Varnum Avenue, Lowell, MA" in team
    assert "978-937-6000" in team
    for page in (visits, team):
        assert "RIVERSIDE" not in page and "VARNUM" not in page and "9789376000" not in page


def test_periods_that_start_a_line_keep_their_month_capitalised(
    client: FlaskClient, record: None
) -> None:
    plans = words(client.get("/records/care-plans").text)
    assert "Since 21 May 1963" in plans and "21 may" not in plans
    team = words(client.get("/records/care-team").text)
    assert "Since 21 May 1963" in team


def test_a_category_sent_as_a_code_shows_its_words(client: FlaskClient, record: None) -> None:
    page = words(client.get("/records/documents").text)
    assert "Clinical note" in page and "clinical-note" not in page


def test_decimals_are_shown_as_the_clinic_sent_them(client: FlaskClient, record: None) -> None:
    labs = words(client.get("/records/labs").text)
    assert "5.10 mmol/L" in labs and "5 mmol/L" in labs
    history = words(client.get("/records/labs/test/6298-4").text)
    assert "5.10 mmol/L" in history and "5.1 mmol/L" not in history
    assert "70.50 kg" in words(client.get("/records/vitals").text)


# ---- the patient's own entries -----------------------------------------------------------------


def _entry_id(page: str) -> int:
    return int(page.split('class="mine-link" href="/entries/')[1].split('"')[0])


def test_an_own_medicine_is_one_you_take_since_the_day_you_gave(
    client: FlaskClient, me: int
) -> None:
    form = {"name": "Metformin 500 mg tablet", "taking": "yes", "started": "1963-05-21"}
    assert client.post("/entries/new/medication", data=form).status_code == 302
    listing = client.get("/records/medications").text
    text = words(listing)
    assert "You take it since 21 May 1963" in text
    assert "Prescribed" not in text and "By Ana Lima" not in text
    entry = words(client.get(f"/entries/{_entry_id(listing)}").text)
    assert "You take it since 21 May 1963" in entry and "on 21 May 1963" not in entry


def test_an_own_medicine_without_a_day_says_when_it_was_added(client: FlaskClient, me: int) -> None:
    form = {"name": "Metformin 500 mg tablet", "taking": "no"}
    assert client.post("/entries/new/medication", data=form).status_code == 302
    text = words(client.get("/records/medications?show=past").text)
    assert re.search(r"You took it \(added \d+ [A-Z][a-z]{2} \d{4}\)", text)
    assert "Prescribed" not in text


def test_an_own_allergy_page_shows_the_reaction_and_severity_entered(
    client: FlaskClient, me: int
) -> None:
    form = {
        "name": "Peanuts",
        "kind": "allergy",
        "category": "food",
        "reaction": "Hives",
        "severity": "severe",
        "status": "active",
    }
    assert client.post("/entries/new/allergy", data=form).status_code == 302
    listing = client.get("/records/allergies").text
    assert "Reaction: Hives" in words(listing) and "Severe" in words(listing)
    entry = words(client.get(f"/entries/{_entry_id(listing)}").text)
    assert "Reaction: Hives (severe)" in entry


def test_an_own_reading_keeps_the_digits_typed(client: FlaskClient, me: int) -> None:
    form = {"value": "70.50", "unit": "kg", "when": "2026-03-04T08:30", "tz": "0"}
    assert client.post("/entries/new/weight", data=form).status_code == 302
    vitals = client.get("/records/vitals").text
    assert "70.50 kg" in words(vitals)
    entry_id = int(re.findall(r'href="/entries/(\d+)"', vitals)[0])
    assert "70.50 kg" in words(client.get(f"/entries/{entry_id}").text)
