"""Imaging studies: listed with how, where, when, and the report linked to them."""

from __future__ import annotations

import re
import uuid

from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from tests.phr import factories as f
from tests.sessions import begin


def sign_in(client: FlaskClient, account_id: int) -> None:
    with client.session_transaction() as session:
        begin(session, account_id)


def main(html: str) -> str:
    return html.split('<main id="main">', 1)[1].split("</main>", 1)[0]


def test_studies_are_listed_with_modality_body_site_and_date(
    app: Flask, client: FlaskClient
) -> None:
    with app.app_context():
        account, _connection, resources = f.patient_with(db.session, "fletcher_hyatt")
        db.session.commit()
        account_id = account.id
    studies = [r for r in resources if r["resourceType"] == "ImagingStudy"]
    sign_in(client, account_id)
    text = main(client.get("/records/imaging").text)
    assert f"{len(studies)} imaging studies, newest first." in text
    assert text.count('<li class="item">') == len(studies)  # the count is the rows shown
    first = studies[0]["series"][0]
    assert first["modality"]["display"] in text and first["bodySite"]["display"] in text
    assert "No report is linked to this study" in text


def test_the_report_linked_to_a_study_is_shown(app: Flask, client: FlaskClient) -> None:
    study_id = uuid.uuid4().hex
    with app.app_context():
        account = f.make_account(db.session, "Jo")
        connection = f.make_connection(db.session, account)
        f.add_resources(
            db.session,
            connection,
            [
                {
                    "resourceType": "ImagingStudy",
                    "id": study_id,
                    "status": "available",
                    "subject": {"reference": "Patient/x"},
                    "started": "2024-04-05T09:00:00Z",
                    "description": "Chest X-ray",
                    "series": [
                        {
                            "uid": "1.2.3",
                            "modality": {"code": "DX", "display": "Digital Radiography"},
                            "bodySite": {"code": "51185008", "display": "Chest"},
                        }
                    ],
                },
                {
                    "resourceType": "DiagnosticReport",
                    "id": uuid.uuid4().hex,
                    "status": "final",
                    "code": {"text": "Chest X-ray report"},
                    "subject": {"reference": "Patient/x"},
                    "effectiveDateTime": "2024-04-05T10:00:00Z",
                    "imagingStudy": [{"reference": f"ImagingStudy/{study_id}"}],
                    "conclusion": "No sign of pneumonia.",
                },
            ],
        )
        db.session.commit()
        account_id = account.id
    sign_in(client, account_id)
    text = main(client.get("/records/imaging").text)
    assert "Chest X-ray" in text and "Digital Radiography" in text and "Chest" in text
    assert "No sign of pneumonia." in text
    assert re.search(r"5 Apr 2024", text)
