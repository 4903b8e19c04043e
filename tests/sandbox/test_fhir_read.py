"""read and vread, their headers, and the OperationOutcome every error comes as."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import httpx
import pytest

from tests.sandbox.tokens import FHIR_JSON, assert_outcome, bearer, mint_token


@pytest.fixture(scope="module")
def patient(loaded) -> str:
    return loaded["christin_stiedemann"].patient_id


@pytest.fixture(scope="module")
def token(sandbox_app, patient) -> str:
    return mint_token(sandbox_app, patient, "patient/*.rs")


@pytest.fixture(scope="module")
def observation(sandbox_app, patient, token) -> dict:
    with httpx.Client(
        transport=httpx.WSGITransport(app=sandbox_app), base_url="http://ehr.test"
    ) as http:
        bundle = http.get("/fhir/Observation?_count=1", headers=bearer(token)).json()
    resource: dict = bundle["entry"][0]["resource"]
    return resource


def test_read_returns_the_resource_with_version_headers(http, token, observation):
    response = http.get(f"/fhir/Observation/{observation['id']}", headers=bearer(token))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body = response.json()
    assert body == observation
    assert body["meta"]["versionId"] == "1"
    assert response.headers["etag"] == 'W/"1"'
    modified = parsedate_to_datetime(response.headers["last-modified"])
    updated = body["meta"]["lastUpdated"].replace("Z", "+00:00")
    assert modified.isoformat()[:19] == updated[:19]


def test_read_own_patient(http, token, patient):
    response = http.get(f"/fhir/Patient/{patient}", headers=bearer(token))
    assert response.status_code == 200
    assert response.json()["id"] == patient


def test_vread_returns_that_version(http, token, observation):
    url = f"/fhir/Observation/{observation['id']}/_history/1"
    response = http.get(url, headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == observation
    assert response.headers["etag"] == 'W/"1"'
    assert "last-modified" in response.headers


@pytest.mark.parametrize("vid", ["2", "0", "x", "99999999999999999999", "%C2%B2"])
def test_vread_of_a_missing_version_is_404(http, token, observation, vid):
    url = f"/fhir/Observation/{observation['id']}/_history/{vid}"
    assert_outcome(http.get(url, headers=bearer(token)), 404, "not-found")


@pytest.mark.parametrize("rid", ["does-not-exist", "bad$id", "x" * 65])
def test_read_of_an_unknown_id_is_404(http, token, rid):
    assert_outcome(http.get(f"/fhir/Observation/{rid}", headers=bearer(token)), 404, "not-found")


def test_read_of_a_known_id_under_another_type_is_404(http, token, observation):
    response = http.get(f"/fhir/Condition/{observation['id']}", headers=bearer(token))
    assert_outcome(response, 404, "not-found")


@pytest.mark.parametrize(
    "path", ["/fhir/Foo", "/fhir/Foo/1", "/fhir/Foo/1/_history/1", "/fhir/observation"]
)
def test_unknown_type_is_404(http, token, path):
    body = assert_outcome(http.get(path, headers=bearer(token)), 404, "not-found")
    assert "not supported" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/fhir/Observation/1"),
        ("DELETE", "/fhir/Observation/1"),
        ("PATCH", "/fhir/Observation/1"),
        ("POST", "/fhir/Patient"),
        ("POST", "/fhir/Encounter"),
        ("POST", "/fhir/Observation/1"),
        ("DELETE", "/fhir/Observation"),
    ],
)
def test_unsupported_interactions_are_405(http, token, method, path):
    response = http.request(method, path, headers=bearer(token), json={})
    assert_outcome(response, 405, "not-supported")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/fhir/Observation/1/_history/1/extra"),
        ("GET", "/fhir/Observation/1/extra"),
        ("GET", "/fhir/Observation/"),
        ("PUT", "/fhir/Observation/1/_history/1/extra"),
        ("DELETE", "/fhir/Foo/1"),
    ],
)
def test_unknown_paths_are_404(http, token, method, path):
    assert_outcome(http.request(method, path, headers=bearer(token)), 404, "not-found")


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        ({"url": "/fhir/Observation", "headers": {}}, 401, "login"),
        ({"url": "/fhir/Observation?date=someday"}, 400, "invalid"),
        ({"url": "/fhir/Observation/nope"}, 404, "not-found"),
    ],
)
def test_errors_are_operation_outcomes(http, token, request_kwargs, status, code):
    kwargs = {"headers": bearer(token), **request_kwargs}
    assert_outcome(http.get(**kwargs), status, code)
