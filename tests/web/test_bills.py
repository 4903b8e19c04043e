"""Bills and claims: each bill once (a claim through the insurer's explanation of it), amounts
only as the sources state them, and the insurers on the coverage page when no coverage came."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from portal.phr import claims
from portal.phr.access import open_record
from portal.phr.records import Records
from tests.phr import factories as f
from tests.sessions import begin

ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"


def money(value: float) -> dict[str, Any]:
    return {"value": value, "currency": "USD"}


def claim(claim_id: str, when: str, total: float, service: str) -> dict[str, Any]:
    return {
        "resourceType": "Claim",
        "id": claim_id,
        "status": "active",
        "type": {"coding": [{"code": "professional"}]},
        "use": "claim",
        "patient": {"reference": "Patient/x"},
        "billablePeriod": {"start": when, "end": when},
        "created": when,
        "provider": {"display": "Riverside Clinic Billing"},
        "priority": {"coding": [{"code": "normal"}]},
        "insurance": [
            {"sequence": 1, "focal": True, "coverage": {"display": "Blue Harbor Health"}}
        ],
        "item": [{"sequence": 1, "productOrService": {"text": service}}],
        "total": money(total),
    }


def explanation(claim_id: str, when: str, billed: float, paid: float, copay: float | None):
    item: dict[str, Any] = {"sequence": 1, "productOrService": {"text": "Office visit"}}
    if copay is not None:
        item["adjudication"] = [
            {
                "category": {"coding": [{"system": ADJUDICATION, "code": "copay"}]},
                "amount": money(copay),
            }
        ]
    return {
        "resourceType": "ExplanationOfBenefit",
        "id": uuid.uuid4().hex,
        "status": "active",
        "type": {"coding": [{"code": "professional"}]},
        "use": "claim",
        "patient": {"reference": "Patient/x"},
        "billablePeriod": {"start": when},
        "created": when,
        "insurer": {"display": "Blue Harbor Health"},
        "provider": {"display": "Riverside Clinic Billing"},
        "claim": {"reference": f"Claim/{claim_id}"},
        "outcome": "complete",
        "insurance": [{"focal": True, "coverage": {"display": "Blue Harbor Health"}}],
        "item": [item],
        "total": [
            {
                "category": {"coding": [{"system": ADJUDICATION, "code": "submitted"}]},
                "amount": money(billed),
            }
        ],
        "payment": {"amount": money(paid)},
    }


@pytest.fixture
def billed(app: Flask, client: FlaskClient) -> int:
    with app.app_context():
        s = db.session
        account = f.make_account(s, "Eli")
        connection = f.make_connection(s, account)
        f.add_resources(
            s,
            connection,
            [
                claim("c1", "2024-02-03T10:00:00Z", 180, "Office visit"),
                explanation("c1", "2024-02-03T10:00:00Z", 180, 150, 30),
                claim("c2", "2024-06-01T10:00:00Z", 95.5, "Flu shot"),  # not answered yet
            ],
        )
        s.commit()
        account_id = account.id
    with client.session_transaction() as session:
        begin(session, account_id)
    return account_id


def main(html: str) -> str:
    return html.split('<main id="main">', 1)[1].split("</main>", 1)[0]


def test_each_bill_once_with_what_the_insurer_says(client: FlaskClient, billed: int) -> None:
    text = main(client.get("/records/bills").text)
    assert "2 bills, newest first." in text
    assert text.count('<tr>\n      <th scope="row">') == 2  # the count is the rows shown
    flu, visit = text.index("Flu shot"), text.index("Office visit")
    assert flu < visit  # newest first
    assert "$180.00" in text and "$150.00" in text and "$30.00" in text
    assert "$95.50" in text and "Not answered by the insurer yet" in text
    assert "Blue Harbor Health" in text and "Riverside Clinic Billing" in text


def test_a_share_the_insurer_does_not_state_is_not_guessed(app: Flask, billed: int) -> None:
    with app.app_context():
        s = db.session
        account = f.make_account(s, "Fay")
        connection = f.make_connection(s, account)
        f.add_resources(s, connection, [explanation("c9", "2024-01-01", 100, 80, None)])
        (bill,) = claims.bills(Records(s, open_record(s, account.id))).items
        assert bill.billed == "$100.00" and bill.insurance_paid == "$80.00"
        assert bill.you_owe is None  # not $20.00: the insurer did not say


def test_the_coverage_page_names_the_insurers_of_the_bills(
    client: FlaskClient, billed: int
) -> None:
    text = main(client.get("/records/coverage").text)
    assert "your bills name who paid for your care" in text
    assert "Blue Harbor Health" in text and re.search(
        r"On 2 bills, from 3 Feb 2024 to 1 Jun 2024",
        text,  # the two the bills page lists
    )


def test_bills_not_shared_say_so(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        account = f.make_account(db.session, "Gil")
        f.make_connection(
            db.session, account, granted_scope="launch/patient patient/Observation.rs"
        )
        db.session.commit()
        account_id = account.id
    with client.session_transaction() as session:
        begin(session, account_id)
    text = main(client.get("/records/bills").text)
    assert "bills and claims" in text and "not" in text.lower() and "<table" not in text


def test_brants_bills_from_synthea(app: Flask, client: FlaskClient) -> None:
    """Every explanation of benefit, and each claim none of them answers."""
    with app.app_context():
        account, _connection, resources = f.patient_with(db.session, "brant_jacobson")
        db.session.commit()
        account_id = account.id
    answered = {
        r["claim"]["reference"] for r in resources if r["resourceType"] == "ExplanationOfBenefit"
    }
    expected = sum(r["resourceType"] == "ExplanationOfBenefit" for r in resources) + sum(
        r["resourceType"] == "Claim" and f"Claim/{r['id']}" not in answered for r in resources
    )
    with client.session_transaction() as session:
        begin(session, account_id)
    assert f"{expected} bills, newest first." in main(client.get("/records/bills").text)
