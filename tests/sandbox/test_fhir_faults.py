"""Injected faults as a client of the FHIR API meets them (set through POST /admin/faults)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fhirclient.models.fhirabstractbase import FHIRValidationError
from fhirclient.models.observation import Observation

from portal.sandbox.fhir.store import read_bundle_file
from tests.sandbox.conftest import ADMIN, DATA
from tests.sandbox.tokens import assert_outcome, bearer, mint_token

NAME = "christin_stiedemann"


@pytest.fixture(autouse=True)
def no_faults_left(http) -> Iterator[None]:
    yield
    assert http.delete("/admin/faults", auth=ADMIN).status_code == 200


@pytest.fixture(scope="module")
def token(sandbox_app, loaded) -> str:
    return mint_token(sandbox_app, loaded[NAME].patient_id, "patient/*.rs")


@pytest.fixture(scope="module")
def observation_ids() -> set[str]:
    entries = read_bundle_file(DATA / f"{NAME}.json.gz")["entry"]
    return {e["resource"]["id"] for e in entries if e["resource"]["resourceType"] == "Observation"}


def set_faults(http, **spec: dict[str, int | None]) -> None:
    response = http.post("/admin/faults", json=spec, auth=ADMIN)
    assert response.status_code == 200, response.text


def next_url(bundle: dict) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)


def self_url(bundle: dict) -> str:
    return next(link["url"] for link in bundle["link"] if link["relation"] == "self")


def test_latency_delays_data_requests(http, token):
    set_faults(http, latency_ms={"value": 300})
    started = time.perf_counter()
    assert http.get("/fhir/Observation?_count=1", headers=bearer(token)).status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_latency_with_remaining_uses_runs_out(http, token):
    set_faults(http, latency_ms={"value": 400, "remaining": 1})
    http.get("/fhir/Observation?_count=1", headers=bearer(token))
    started = time.perf_counter()
    http.get("/fhir/Observation?_count=1", headers=bearer(token))
    assert time.perf_counter() - started < 0.4


@pytest.mark.parametrize(
    "path", ["/fhir/Observation", "/fhir/Observation/x", "/fhir/Observation/x/_history/1"]
)
def test_rate_limit_answers_429_with_retry_after(http, token, path):
    set_faults(http, rate_limit={"value": 2})
    response = http.get(path, headers=bearer(token))
    assert_outcome(response, 429, "throttled")
    assert response.headers["retry-after"] == "2"


def test_rate_limit_with_remaining_uses_lets_requests_through_afterwards(http, token):
    set_faults(http, rate_limit={"value": 2, "remaining": 1})
    assert http.get("/fhir/Observation", headers=bearer(token)).status_code == 429
    assert http.get("/fhir/Observation", headers=bearer(token)).status_code == 200
    assert http.get("/admin/faults", auth=ADMIN).json()["active"]["rate_limit"]["remaining"] == 0


def test_rate_limit_applies_to_create(http, token):
    set_faults(http, rate_limit={"value": 1})
    response = http.post("/fhir/Observation", json={}, headers=bearer(token))
    assert_outcome(response, 429, "throttled")


def test_unavailable_answers_503_with_retry_after(http, token):
    set_faults(http, unavailable={"value": 7, "remaining": 2})
    for _ in range(2):
        response = http.get("/fhir/Observation", headers=bearer(token))
        body = assert_outcome(response, 503, "transient")
        assert body["issue"][0]["severity"] == "fatal"
        assert response.headers["retry-after"] == "7"
    assert http.get("/fhir/Observation", headers=bearer(token)).status_code == 200


def test_faults_apply_before_authentication(http):
    set_faults(http, unavailable={"value": 3})
    assert_outcome(http.get("/fhir/Observation"), 503, "transient")


def test_malformed_resource_adds_one_bad_entry_to_every_page(http, token, observation_ids):
    set_faults(http, malformed_resource={"value": 1})
    response = http.get("/fhir/Observation?_count=40", headers=bearer(token))
    real: set[str] = set()
    pages = 0
    while True:
        bundle = response.json()
        assert bundle["total"] == len(observation_ids)  # the bad entry is not a match
        bad = []
        for entry in bundle["entry"]:
            try:
                Observation(entry["resource"], strict=True)
            except FHIRValidationError:
                bad.append(entry["resource"])
            else:
                real.add(entry["resource"]["id"])
        assert len(bad) == 1
        assert "status" not in bad[0]
        assert isinstance(bad[0]["code"], int)
        pages += 1
        url = next_url(bundle)
        if url is None:
            break
        response = http.get(url, headers=bearer(token))
    assert pages == 3
    assert real == observation_ids


def test_malformed_resource_leaves_reads_alone(http, token, observation_ids):
    set_faults(http, malformed_resource={"value": 1})
    rid = sorted(observation_ids)[0]
    response = http.get(f"/fhir/Observation/{rid}", headers=bearer(token))
    Observation(response.json(), strict=True)


def test_looping_next_points_back_at_the_same_page(http, token):
    set_faults(http, looping_next={"value": 1, "remaining": 1})
    first = http.get("/fhir/Observation?_count=10", headers=bearer(token)).json()
    assert next_url(first) == self_url(first)
    again = http.get(next_url(first), headers=bearer(token)).json()  # type: ignore[arg-type]
    assert [e["resource"]["id"] for e in again["entry"]] == [
        e["resource"]["id"] for e in first["entry"]
    ]
    assert next_url(again) != self_url(again)  # the fault was used up


def test_looping_next_even_on_a_single_page(http, token):
    set_faults(http, looping_next={"value": 1})
    bundle = http.get("/fhir/Patient", headers=bearer(token)).json()
    assert next_url(bundle) == self_url(bundle)
