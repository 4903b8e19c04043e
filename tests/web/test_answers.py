"""Social history and questionnaires: their own pages, a summary card, wherever the clinic
filed them (Synthea files smoking status under `survey`)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from tests.phr import factories as f
from tests.sessions import begin


def observation(
    category: str | None, code: str, name: str, when: str, **value: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": uuid.uuid4().hex,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": name}]},
        "subject": {"reference": "Patient/x"},
        "effectiveDateTime": when,
        **value,
    }
    if category:
        resource["category"] = [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": category,
                    }
                ]
            }
        ]
    return resource


def smoking(when: str, answer: str, category: str = "survey") -> dict[str, Any]:
    return observation(
        category,
        "72166-2",
        "Tobacco smoking status NHIS",
        when,
        valueCodeableConcept={"text": answer},
    )


def phq9(when: str, score: int) -> dict[str, Any]:
    return observation(
        "survey",
        "44261-6",
        "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]",
        when,
        valueQuantity={"value": score, "unit": "{score}"},
    )


@pytest.fixture
def patient(app: Flask, client: FlaskClient) -> dict[str, int]:
    with app.app_context():
        s = db.session
        account = f.make_account(s, "Dana")
        riverside = f.make_connection(s, account, "Riverside General Hospital")
        lakeside = f.make_connection(s, account, "Lakeside Family Clinic")
        f.add_resources(
            s,
            riverside,
            [
                smoking("2019-03-01T10:00:00Z", "Former smoker"),
                smoking("2015-03-01T10:00:00Z", "Every day smoker"),
                observation(
                    "social-history",
                    "74013-4",
                    "Alcoholic drinks per day",
                    "2019-03-01T10:00:00Z",
                    valueQuantity={"value": 1, "unit": "/d"},
                ),
                phq9("2019-03-01T10:00:00Z", 4),
                phq9("2018-03-01T10:00:00Z", 11),
            ],
        )
        f.add_resources(s, lakeside, [smoking("2019-03-01T10:00:00Z", "Former smoker")])
        s.commit()
        ids = {"account": account.id}
    with client.session_transaction() as session:
        begin(session, ids["account"])
    return ids


def main(html: str) -> str:
    return html.split('<main id="main">', 1)[1].split("</main>", 1)[0]


def test_social_history_has_its_page_wherever_the_clinic_filed_it(
    client: FlaskClient, patient: dict[str, int]
) -> None:
    page = client.get("/records/social-history")
    assert page.status_code == 200
    text = main(page.text)
    assert "<h2" in text and "Smoking</h2>" in text and "Former smoker" in text
    assert "NHIS" not in text  # the plain name, not the code's
    assert "Every day smoker" in text  # the earlier answer, under it
    assert "Alcoholic drinks per day" in text
    assert "PHQ-9" not in text
    # Two clinics with the same answer on the same day: one answer, both named.
    assert text.count("Former smoker") == 1


def test_the_same_answer_given_at_every_visit_reads_as_one(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        account = f.make_account(db.session, "Ira")
        connection = f.make_connection(db.session, account)
        f.add_resources(
            db.session,
            connection,
            [
                smoking("2021-01-01T10:00:00Z", "Former smoker"),
                *(smoking(f"{year}-01-01T10:00:00Z", "Never smoker") for year in range(2013, 2020)),
            ],
        )
        db.session.commit()
        account_id = account.id
    with client.session_transaction() as session:
        begin(session, account_id)
    text = main(client.get("/records/social-history").text)
    assert text.count("Never smoker") == 1
    assert "1 Jan 2013 to 1 Jan 2019 (7 times)" in text


def test_questionnaires_are_grouped_with_their_scores_over_time(
    client: FlaskClient, patient: dict[str, int]
) -> None:
    text = main(client.get("/records/questionnaires").text)
    assert text.count("<h2") == 1 and "PHQ-9" in text
    latest, earlier = text.index("<strong>4</strong>"), text.index('data-label="Score">11<')
    assert latest < earlier  # the latest score first, then the earlier ones
    assert "Tobacco" not in text


def test_the_summary_shows_social_history_with_links(
    client: FlaskClient, patient: dict[str, int]
) -> None:
    text = main(client.get("/records/").text)
    card = text.split('id="h-social"', 1)[1].split("</section>", 1)[0]
    assert "Former smoker" in card
    assert re.search(r'href="/records/social-history#topic-\d+"', card)


def test_both_pages_are_in_the_section_navigation(
    client: FlaskClient, patient: dict[str, int]
) -> None:
    page = client.get("/records/").text
    assert 'href="/records/social-history"' in page and 'href="/records/questionnaires"' in page


def test_nothing_to_show_says_so(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        account, _connection, _ = f.patient_with(db.session, "christin_stiedemann")
        db.session.commit()
        account_id = account.id
    with client.session_transaction() as session:
        begin(session, account_id)
    text = main(client.get("/records/questionnaires").text)
    assert 'class="empty' in text and "<article" not in text


def test_measurements_filed_outside_the_lab_category_are_among_the_results(
    app: Flask, client: FlaskClient
) -> None:
    """Fletcher Hyatt's ejection fraction is filed under `imaging` and `vital-sign`."""
    with app.app_context():
        account, _connection, _ = f.patient_with(db.session, "fletcher_hyatt")
        db.session.commit()
        account_id = account.id
    with client.session_transaction() as session:
        begin(session, account_id)
    listed = [client.get(f"/records/labs?page={n}").text for n in range(1, 30)]
    assert any("Left ventricular Ejection fraction" in main(page) for page in listed)
    history = client.get("/records/labs/test/10230-1")
    assert history.status_code == 200 and "Left ventricular Ejection fraction" in history.text
