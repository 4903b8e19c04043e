"""A FHIR decimal keeps the digits the EHR sent, from the response to the page: parsed, stored
by the sync's own writer, read back (both databases) and shown (`5.10` as 5.10, `5` as 5)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.extensions import db
from portal.fhirjson import FhirDecimal
from portal.phr import labs
from portal.phr.access import open_record
from portal.phr.records import Records
from portal.smart.fhir import json_object
from portal.sync.store import encode, prepare_page, upsert_records
from tests.phr import factories as f

RESPONSE = b"""{"resourceType": "Bundle", "type": "searchset", "entry": [
 {"resource": {"resourceType": "Observation", "id": "k1", "status": "final",
  "category": [{"coding": [{"code": "laboratory"}]}],
  "code": {"coding": [{"system": "http://loinc.org", "code": "6298-4",
                       "display": "Potassium [Moles/volume] in Blood"}]},
  "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2020-05-17",
  "valueQuantity": {"value": 5.10, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                    "code": "mmol/L"},
  "referenceRange": [{"low": {"value": 3.50, "unit": "mmol/L"},
                      "high": {"value": 5.0, "unit": "mmol/L"}}]}},
 {"resource": {"resourceType": "Observation", "id": "k2", "status": "final",
  "category": [{"coding": [{"code": "laboratory"}]}],
  "code": {"coding": [{"system": "http://loinc.org", "code": "6298-4",
                       "display": "Potassium [Moles/volume] in Blood"}]},
  "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2019-05-17",
  "valueQuantity": {"value": 5, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                    "code": "mmol/L"}}}
]}"""


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with app.app_context():
        yield db.session


def test_a_response_is_parsed_and_encoded_with_its_digits() -> None:
    bundle = json_object(RESPONSE)
    value = bundle["entry"][0]["resource"]["valueQuantity"]["value"]
    assert isinstance(value, FhirDecimal) and value == 5.1 and value.text == "5.10"
    assert '"value":5.10,' in encode(bundle["entry"][0]["resource"])
    assert '"value":5,' in encode(bundle["entry"][1]["resource"])


def test_stored_by_the_sync_and_read_back_as_sent(session: Session) -> None:
    account = f.make_account(session)
    connection = f.make_connection(session, account, patient_id="p1")
    page = [(e["resource"], "match") for e in json_object(RESPONSE)["entry"]]
    checked = prepare_page(
        page, "Observation", "p1", (), "https://ehr.example/fhir", connection.id, utcnow()
    )
    assert not checked.quarantined
    upsert_records(session, checked.rows)
    session.flush()
    records = Records(session, open_record(session, account.id))
    # Read whole and read element by element (the pages pluck what they show).
    for row in records.rows(["labs"]) + records.rows(["labs"], elements=labs.ELEMENTS):
        value = row.raw["valueQuantity"]["value"]
        if row.resource_id == "k1":
            assert isinstance(value, FhirDecimal) and value.text == "5.10"
        else:
            assert value == 5 and isinstance(value, int)
    test = labs.test_history(records, "6298-4")
    assert test is not None
    assert [r.text for r in test.results] == ["5.10 mmol/L", "5 mmol/L"]
    assert test.results[0].flag is not None and test.results[0].flag.words == "High"
