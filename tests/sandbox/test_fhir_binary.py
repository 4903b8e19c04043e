"""Binary read: the content itself unless FHIR JSON is asked for, Binary scopes, and the
patient compartment through securityContext (the patient, or a resource of theirs)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from portal.db import transaction
from portal.sandbox.db import sdb
from portal.sandbox.fhir.store import add_resource
from portal.sandbox.scopes import covers
from portal.sandbox.setup import PORTAL_CLIENT_SCOPE
from portal.smart.scopes import requested_scope
from tests.sandbox.conftest import BASE_URL
from tests.sandbox.tokens import FHIR_JSON, assert_outcome, bearer, mint_token, separate_sandbox

PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
ME, OTHER = "binary-me", "binary-other"


def patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": pid}]}


def note(pid: str, rid: str, binary_id: str) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "id": rid,
        "status": "current",
        "subject": {"reference": f"Patient/{pid}"},
        "content": [
            {"attachment": {"contentType": "application/pdf", "url": f"Binary/{binary_id}"}}
        ],
    }


def binary(
    rid: str, context: str | None, data: bytes = PDF, ctype: str = "application/pdf"
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Binary",
        "id": rid,
        "contentType": ctype,
        "data": base64.b64encode(data).decode(),
    }
    if context:
        resource["securityContext"] = {"reference": context}
    return resource


def collection(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }


@pytest.fixture(scope="module")
def ehr(instance_dir: Path) -> Iterator[Flask]:
    """A store of two patients, each with Binaries tied to them in different ways."""
    bundles = [
        collection(
            patient(ME),
            note(ME, "me-note", "me-via-note"),
            binary("me-direct", f"Patient/{ME}"),
            binary("me-via-note", "DocumentReference/me-note"),  # loaded in the same bundle
            binary("me-text", f"Patient/{ME}", b"Hello, plain text.", "text/plain"),
            binary("nobodys", None),
            binary("shared-context", "Organization/some-org"),
            binary("chained", "Binary/me-direct"),
        ),
        collection(
            patient(OTHER),
            note(OTHER, "other-note", "other-via-note"),
            binary("other-direct", f"Patient/{OTHER}"),
            binary("other-via-note", "DocumentReference/other-note"),
        ),
    ]
    with separate_sandbox("binary", instance_dir, bundles) as (app, _results):
        with transaction(sdb.sessionmaker(app)) as session:  # added later, as the API stores
            add_resource(session, binary("me-added-later", "DocumentReference/me-note"))
        yield app


@pytest.fixture(scope="module")
def http(ehr: Flask) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.WSGITransport(app=ehr), base_url=BASE_URL) as client:
        yield client


@pytest.fixture(scope="module")
def token(ehr: Flask) -> str:
    return mint_token(ehr, ME, "launch/patient openid fhirUser patient/*.rs")


def get(http: httpx.Client, token: str, path: str, accept: str | None = None) -> httpx.Response:
    headers = bearer(token)
    if accept is not None:
        headers["Accept"] = accept
    return http.get(path, headers=headers)


# --- Accept ----------------------------------------------------------------------------------


@pytest.mark.parametrize("accept", ["application/pdf", "*/*", "text/html, */*;q=0.8", "image/png"])
def test_read_answers_the_content_itself(http, token, accept):
    response = get(http, token, "/fhir/Binary/me-direct", accept)
    assert response.status_code == 200
    assert response.content == PDF
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]
    assert response.headers["etag"] == 'W/"1"'


def test_the_content_comes_with_its_own_type(http, token):
    response = get(http, token, "/fhir/Binary/me-text", "text/plain")
    assert response.content == b"Hello, plain text."
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "accept", [FHIR_JSON, "application/json", "application/fhir+json;q=0.9, */*;q=0.1"]
)
def test_fhir_json_asked_for_answers_the_binary_resource(http, token, accept):
    response = get(http, token, "/fhir/Binary/me-direct", accept)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body = response.json()
    assert body["resourceType"] == "Binary" and body["id"] == "me-direct"
    assert body["contentType"] == "application/pdf"
    assert base64.b64decode(body["data"]) == PDF


def test_format_json_answers_the_binary_resource(http, token):
    response = get(http, token, "/fhir/Binary/me-direct?_format=json", "application/pdf")
    assert response.json()["resourceType"] == "Binary"


def test_vread_follows_the_same_rule(http, token):
    assert get(http, token, "/fhir/Binary/me-direct/_history/1", "*/*").content == PDF
    as_json = get(http, token, "/fhir/Binary/me-direct/_history/1", FHIR_JSON)
    assert as_json.json()["resourceType"] == "Binary"


def test_errors_stay_operation_outcomes_whatever_is_accepted(http, token):
    response = get(http, token, "/fhir/Binary/other-direct", "application/pdf")
    assert_outcome(response, 404, "not-found")


# --- scopes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "status"),
    [
        ("patient/Binary.read", 200),
        ("patient/Binary.r", 200),
        ("patient/Binary.rs", 200),
        ("patient/*.read", 200),
        ("patient/*.rs", 200),
        ("user/Binary.read", 200),
        ("patient/Binary.s", 403),
        ("patient/Binary.write", 403),
        ("patient/Binary.cud", 403),
        ("patient/DocumentReference.rs", 403),
        ("launch/patient openid fhirUser", 403),
    ],
)
def test_reading_needs_a_binary_read_scope(http, ehr, scope, status):
    response = get(http, mint_token(ehr, ME, scope), "/fhir/Binary/me-direct", "application/pdf")
    if status == 200:
        assert response.status_code == 200 and response.content == PDF
    else:
        assert_outcome(response, 403, "forbidden")


def test_the_portal_client_may_ask_for_every_scope_the_portal_requests():
    allowed = PORTAL_CLIENT_SCOPE.split()
    for capabilities in (["permission-v2"], ["permission-v1"]):
        for ehr_launch in (True, False):
            for scope in requested_scope(capabilities, ehr_launch=ehr_launch).split():
                assert any(covers(a, scope) for a in allowed), scope


# --- the patient compartment -----------------------------------------------------------------


@pytest.mark.parametrize("rid", ["me-direct", "me-via-note", "me-added-later"])
def test_own_binaries_are_readable(http, token, rid):
    response = get(http, token, f"/fhir/Binary/{rid}", "application/pdf")
    assert response.status_code == 200 and response.content == PDF


@pytest.mark.parametrize(
    "rid",
    ["other-direct", "other-via-note", "nobodys", "shared-context", "chained", "missing", "bad$id"],
)
def test_other_binaries_are_not_found(http, token, rid):
    for accept in ("application/pdf", FHIR_JSON):
        assert_outcome(get(http, token, f"/fhir/Binary/{rid}", accept), 404, "not-found")
    assert_outcome(get(http, token, f"/fhir/Binary/{rid}/_history/1"), 404, "not-found")


def test_the_other_patient_reads_only_theirs(http, ehr):
    theirs = mint_token(ehr, OTHER, "patient/Binary.read")
    assert get(http, theirs, "/fhir/Binary/other-via-note", "*/*").content == PDF
    assert_outcome(get(http, theirs, "/fhir/Binary/me-direct", "*/*"), 404, "not-found")


def test_a_search_finds_only_own_binaries(http, token):
    response = get(http, token, "/fhir/Binary", FHIR_JSON)
    assert response.status_code == 200
    ids = {e["resource"]["id"] for e in response.json()["entry"]}
    assert ids == {"me-direct", "me-via-note", "me-text", "me-added-later"}


def test_no_binary_answers_without_a_token(http):
    response = http.get("/fhir/Binary/me-direct", headers={"Accept": "application/pdf"})
    assert_outcome(response, 401, "login")


# --- capability statement --------------------------------------------------------------------


def test_capability_statement_lists_binary_read(http):
    statement = http.get("/fhir/metadata").json()
    (entry,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "Binary"]
    assert {"read", "vread"} <= {i["code"] for i in entry["interaction"]}
    assert "create" not in {i["code"] for i in entry["interaction"]}
    assert "securityContext" in entry["documentation"]
