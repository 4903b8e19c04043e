"""create and conditional create, in a store of its own (writes must not change the shared one)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from flask import Flask

from portal.sandbox.fhir.store import read_bundle_file
from tests.sandbox.conftest import BASE_URL, DATA, admin_auth
from tests.sandbox.tokens import (
    FHIR_JSON,
    assert_outcome,
    bearer,
    fetch_all,
    mint_token,
    separate_sandbox,
)


@pytest.fixture(scope="module")
def store(instance_dir) -> Iterator[tuple[Flask, str, str]]:
    bundles = [
        read_bundle_file(DATA / f"{n}.json.gz") for n in ("arron_schamberger", "enda_schaefer")
    ]
    with separate_sandbox("write", instance_dir, bundles) as (app, results):
        me, other = (r.patient_id for r in results)
        assert me and other
        yield app, me, other


@pytest.fixture(scope="module")
def app(store) -> Flask:
    return store[0]


@pytest.fixture(scope="module")
def me(store) -> str:
    return store[1]


@pytest.fixture(scope="module")
def other(store) -> str:
    return store[2]


@pytest.fixture
def client(app) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE_URL) as c:
        yield c


@pytest.fixture(scope="module")
def token(app, me) -> str:
    return mint_token(app, me, "launch/patient patient/*.cruds")


def weight(patient: str, **extra: Any) -> dict[str, Any]:
    """A patient-reported body weight, as the portal writes it."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "Weight"},
        "subject": {"reference": f"Patient/{patient}"},
        "performer": [{"reference": f"Patient/{patient}"}],
        "effectiveDateTime": "2024-03-01T08:00:00Z",
        "valueQuantity": {
            "value": 71.5,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
        **extra,
    }


def post(client: httpx.Client, token: str, body: Any, rtype: str = "Observation", **headers: str):
    return client.post(
        f"/fhir/{rtype}",
        content=body if isinstance(body, (str, bytes)) else None,
        json=None if isinstance(body, (str, bytes)) else body,
        headers={**bearer(token), "Content-Type": FHIR_JSON, **headers},
    )


def test_create_stores_the_resource_and_answers_201(client, token, me):
    before = datetime.now(UTC)
    response = post(client, token, weight(me, id="client-chosen"))
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body = response.json()
    rid = body["id"]
    assert rid != "client-chosen"  # the server assigns ids
    assert body["meta"]["versionId"] == "1"
    assert datetime.fromisoformat(body["meta"]["lastUpdated"].replace("Z", "+00:00")) >= before
    assert response.headers["location"] == f"http://ehr.test/fhir/Observation/{rid}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert body["valueQuantity"]["value"] == 71.5

    read = client.get(f"/fhir/Observation/{rid}", headers=bearer(token))
    assert read.status_code == 200
    assert read.json() == body
    assert client.get(response.headers["location"], headers=bearer(token)).json() == body


def test_a_created_resource_is_searchable_at_once(client, token, me):
    rid = post(client, token, weight(me, effectiveDateTime="2031-05-05")).json()["id"]
    params = {"patient": me, "code": "http://loinc.org|29463-7", "date": "2031-05"}
    found, _ = fetch_all(client, token, "/fhir/Observation", params)
    assert [r["id"] for r in found] == [rid]
    found, _ = fetch_all(client, token, "/fhir/Observation", {"category": "vital-signs"})
    assert rid in {r["id"] for r in found}


def test_last_updated_finds_what_was_written_after_loading(client, token, me):
    loaded = client.get("/fhir/Immunization?_count=1", headers=bearer(token)).json()
    stamp = loaded["entry"][0]["resource"]["meta"]["lastUpdated"]
    rid = post(client, token, weight(me)).json()["id"]
    found, _ = fetch_all(client, token, "/fhir/Observation", {"_lastUpdated": f"gt{stamp}"})
    assert rid in {r["id"] for r in found}
    assert len(found) < 10  # only what the tests created, none of the loaded ones


@pytest.mark.parametrize(
    ("rtype", "body"),
    [
        (
            "Condition",
            {
                "resourceType": "Condition",
                "code": {"text": "Hay fever"},
                "subject": {"reference": "Patient/{me}"},
                "asserter": {"reference": "Patient/{me}"},
            },
        ),
        (
            "AllergyIntolerance",
            {
                "resourceType": "AllergyIntolerance",
                "code": {"text": "Peanuts"},
                "patient": {"reference": "Patient/{me}"},
                "recorder": {"reference": "Patient/{me}"},
            },
        ),
        (
            "MedicationRequest",
            {
                "resourceType": "MedicationRequest",
                "status": "active",
                "intent": "plan",
                "medicationCodeableConcept": {"text": "Ibuprofen 200 mg"},
                "subject": {"reference": "Patient/{me}"},
                "reportedBoolean": True,
            },
        ),
        (
            "MedicationStatement",
            {
                "resourceType": "MedicationStatement",
                "status": "active",
                "medicationCodeableConcept": {"text": "Vitamin D"},
                "subject": {"reference": "Patient/{me}"},
            },
        ),
        (
            "Immunization",
            {
                "resourceType": "Immunization",
                "status": "completed",
                "vaccineCode": {"text": "Influenza"},
                "patient": {"reference": "Patient/{me}"},
                "occurrenceDateTime": "2023-10-01",
                "primarySource": False,
            },
        ),
        (
            "Communication",
            {
                "resourceType": "Communication",
                "status": "completed",
                "sender": {"reference": "Patient/{me}"},
                "payload": [{"contentString": "Question about my results"}],
            },
        ),
        (
            "Appointment",
            {
                "resourceType": "Appointment",
                "status": "proposed",
                "participant": [{"actor": {"reference": "Patient/{me}"}, "status": "accepted"}],
            },
        ),
        (
            "DocumentReference",
            {
                "resourceType": "DocumentReference",
                "status": "current",
                "subject": {"reference": "Patient/{me}"},
                "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8="}}],
            },
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_creatable_type(client, token, me, rtype, body):
    resource = _fill(body, me=me)
    response = post(client, token, resource, rtype)
    assert response.status_code == 201, response.text
    rid = response.json()["id"]
    found, _ = fetch_all(client, token, f"/fhir/{rtype}", {"_id": rid})
    assert [r["id"] for r in found] == [rid]


def _fill(value: Any, **names: str) -> Any:
    """`value` with `{me}`-style placeholders in its strings filled in."""
    if isinstance(value, dict):
        return {k: _fill(v, **names) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, **names) for v in value]
    return value.format(**names) if isinstance(value, str) else value


def test_provenance_for_the_patients_own_resources(client, app, token, me, other):
    rid = post(client, token, weight(me)).json()["id"]
    provenance = {
        "resourceType": "Provenance",
        "target": [{"reference": f"Observation/{rid}"}, {"reference": f"Patient/{me}"}],
        "recorded": "2024-03-01T08:00:00Z",
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "author",
                        }
                    ]
                },
                "who": {"reference": f"Patient/{me}"},
            }
        ],
    }
    response = post(client, token, provenance, "Provenance")
    assert response.status_code == 201, response.text
    found, _ = fetch_all(client, token, "/fhir/Provenance", {"patient": me})
    assert response.json()["id"] in {r["id"] for r in found}

    their_token = mint_token(app, other)
    bundle = client.get("/fhir/Observation?_count=1", headers=bearer(their_token)).json()
    theirs = bundle["entry"][0]["resource"]["id"]
    for target in (f"Observation/{theirs}", f"Patient/{other}", "Observation/nope", "#contained"):
        bad = {**provenance, "target": [{"reference": target}]}
        assert_outcome(post(client, token, bad, "Provenance"), 403, "forbidden")
    assert_outcome(post(client, token, {**provenance, "target": []}, "Provenance"), 400, "invalid")


@pytest.mark.parametrize(
    "change",
    [
        {"subject": {"reference": "Patient/{other}"}},
        {"performer": [{"reference": "Patient/{other}"}]},
        {"subject": {"reference": "Group/1"}},
        {"subject": {"reference": "http://elsewhere.example/fhir/Patient/{me}"}},
    ],
)
def test_create_outside_the_compartment_is_403(client, token, me, other, change):
    body = weight(me, **_fill(change, me=me, other=other))
    count = _count(client, token)
    assert_outcome(post(client, token, body), 403, "forbidden")
    assert _count(client, token) == count


def _count(client: httpx.Client, token: str, query: str = "") -> int:
    response = client.get(f"/fhir/Observation?_count=0&{query}", headers=bearer(token))
    total: int = response.json()["total"]
    return total


def test_absolute_references_to_this_server_count_as_the_patient(client, token, me):
    body = weight(me, subject={"reference": f"http://ehr.test/fhir/Patient/{me}"})
    response = post(client, token, body)
    assert response.status_code == 201
    assert response.json()["subject"] == {"reference": f"Patient/{me}"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"resourceType": "Condition"}', "resourceType must be Observation"),
        ('{"status": "final"}', "resourceType must be Observation"),
    ],
)
def test_bad_bodies_are_400(client, token, body, fragment):
    response = post(client, token, body)
    outcome = assert_outcome(response, 400, "invalid")
    assert fragment in outcome["issue"][0]["diagnostics"]


def test_invalid_resources_are_400_with_paths_and_without_values(client, token, me, caplog):
    body = weight(me, code=12345, valueQuantity={"value": "SECRET-VALUE-123"})
    del body["status"]
    response = post(client, token, body)
    outcome = assert_outcome(response, 400, "invalid")
    diagnostics = outcome["issue"][0]["diagnostics"]
    assert "code" in diagnostics
    assert "status" in diagnostics
    assert "valueQuantity.value" in diagnostics
    assert "SECRET-VALUE-123" not in diagnostics
    assert "0x" not in diagnostics  # no object reprs from the validator
    assert "SECRET-VALUE-123" not in caplog.text


def test_unknown_elements_are_refused(client, token, me):
    response = post(client, token, weight(me, colour="blue"))
    outcome = assert_outcome(response, 400, "invalid")
    assert "colour" in outcome["issue"][0]["diagnostics"]


def test_create_needs_a_json_content_type(client, token, me):
    response = client.post(
        "/fhir/Observation",
        content=b"resourceType=Observation",
        headers={**bearer(token), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_outcome(response, 415, "not-supported")
    response = client.post("/fhir/Observation", json=weight(me), headers=bearer(token))
    assert response.status_code == 201  # application/json is accepted too


# --- If-None-Exist ----------------------------------------------------------------------------


def tagged(me: str, tag: str) -> dict[str, Any]:
    return weight(me, identifier=[{"system": "urn:test:portal", "value": tag}])


def test_conditional_create_creates_once(client, token, me):
    query = "identifier=urn:test:portal|once-1"
    first = post(client, token, tagged(me, "once-1"), **{"If-None-Exist": query})
    assert first.status_code == 201
    count = _count(client, token)
    retry = post(client, token, tagged(me, "once-1"), **{"If-None-Exist": query})
    assert retry.status_code == 200
    assert retry.json()["id"] == first.json()["id"]
    assert retry.headers["location"] == first.headers["location"]
    assert _count(client, token) == count


def test_conditional_create_with_several_matches_is_412(client, token, me):
    post(client, token, tagged(me, "twice"))
    post(client, token, tagged(me, "twice"))
    count = _count(client, token)
    response = post(client, token, tagged(me, "twice"), **{"If-None-Exist": "identifier=twice"})
    assert_outcome(response, 412, "conflict")
    assert _count(client, token) == count


def test_conditional_create_only_looks_in_the_patients_compartment(client, app, token, me, other):
    their_token = mint_token(app, other)
    theirs = post(client, their_token, tagged(other, "shared-tag"))
    assert theirs.status_code == 201
    mine = post(
        client, token, tagged(me, "shared-tag"), **{"If-None-Exist": "identifier=shared-tag"}
    )
    assert mine.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]


@pytest.mark.parametrize("query", ["identifer=urn:test:portal|x", "", "date=someday"])
def test_conditional_create_refuses_queries_it_cannot_apply(client, token, me, query):
    count = _count(client, token)
    response = post(client, token, tagged(me, "x"), **{"If-None-Exist": query})
    assert_outcome(response, 400, "invalid")
    assert _count(client, token) == count


def test_conditional_create_without_read_access_does_not_show_the_match(client, app, me):
    token = mint_token(app, me, "patient/Observation.c")
    post(client, token, tagged(me, "write-only"))
    response = post(
        client, token, tagged(me, "write-only"), **{"If-None-Exist": "identifier=write-only"}
    )
    assert response.status_code == 200
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "location" in response.headers


def test_create_of_a_non_creatable_type_is_405(client, token, me):
    response = post(client, token, {"resourceType": "Encounter"}, "Encounter")
    assert_outcome(response, 405, "not-supported")


def test_create_works_while_a_fault_is_used_up(app, client, token, me):
    """Faults are used up in their own transaction, next to the request's own writes."""
    assert client.post(
        "/admin/faults", json={"latency_ms": {"value": 1, "remaining": 1}}, auth=admin_auth(app)
    ).is_success
    try:
        assert post(client, token, weight(me)).status_code == 201
        active = client.get("/admin/faults", auth=admin_auth(app)).json()["active"]
        assert active["latency_ms"]["remaining"] == 0
    finally:
        client.delete("/admin/faults", auth=admin_auth(app))
