"""Access rules: 401 without a live token, 403 without a scope, the patient compartment,
category-granular v2 scopes."""

from __future__ import annotations

import time
from typing import Any

import pytest

from portal.sandbox.fhir.store import read_bundle_file
from tests.sandbox.conftest import DATA
from tests.sandbox.tokens import (
    SHARED_TYPES,
    SUPPORTED_TYPES,
    assert_outcome,
    bearer,
    fetch_all,
    mint_token,
)

ME = "christin_stiedemann"
OTHER = "raeann_okon"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LAB_SCOPE = f"patient/Observation.rs?category={CATEGORY}|laboratory"


def first(name: str, rtype: str, category: str | None = None) -> dict[str, Any]:
    """The first resource of a type in a shipped bundle (optionally of an Observation category)."""
    for entry in read_bundle_file(DATA / f"{name}.json.gz")["entry"]:
        r = entry["resource"]
        if r["resourceType"] != rtype:
            continue
        if category is None or category in {
            c["code"] for cat in r.get("category", []) for c in cat["coding"]
        }:
            return r  # type: ignore[no-any-return]
    raise LookupError(rtype)


def category_count(name: str, *codes: str) -> int:
    return sum(
        1
        for e in read_bundle_file(DATA / f"{name}.json.gz")["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and {c["code"] for cat in e["resource"]["category"] for c in cat["coding"]} & set(codes)
    )


@pytest.fixture(scope="module")
def me(loaded) -> str:
    return loaded[ME].patient_id


@pytest.fixture(scope="module")
def other(loaded) -> str:
    return loaded[OTHER].patient_id


@pytest.fixture(scope="module")
def token(sandbox_app, me) -> str:
    return mint_token(sandbox_app, me, "launch/patient openid fhirUser patient/*.rs")


# --- 401 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-token"],
    ids=["missing", "basic", "empty", "unknown"],
)
@pytest.mark.parametrize("path", ["/fhir/Observation", "/fhir/Patient/x"])
def test_requests_without_a_valid_token_are_401(http, header, path):
    headers = {"Authorization": header} if header else {}
    response = http.get(path, headers=headers)
    assert_outcome(response, 401, "login")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"issued_at": int(time.time()) - 7200, "expires_in": 3600},
        {"revoked": True},
    ],
    ids=["expired", "revoked"],
)
def test_expired_and_revoked_tokens_are_401(http, sandbox_app, me, kwargs):
    token = mint_token(sandbox_app, me, "patient/*.rs", **kwargs)
    response = http.get("/fhir/Observation", headers=bearer(token))
    body = assert_outcome(response, 401, "login")
    assert token not in body["issue"][0]["diagnostics"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_create_needs_a_token_too(http):
    response = http.post("/fhir/Observation", json={"resourceType": "Observation"})
    assert_outcome(response, 401, "login")


# --- 403: scopes ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def no_resource_scope(sandbox_app, me) -> str:
    return mint_token(sandbox_app, me, "launch/patient openid fhirUser offline_access")


@pytest.mark.parametrize("rtype", SUPPORTED_TYPES)
def test_no_scope_for_the_type_is_403(http, no_resource_scope, rtype):
    assert_outcome(http.get(f"/fhir/{rtype}", headers=bearer(no_resource_scope)), 403, "forbidden")
    response = http.get(f"/fhir/{rtype}/some-id", headers=bearer(no_resource_scope))
    assert_outcome(response, 403, "forbidden")
    response = http.post(f"/fhir/{rtype}/_search", headers=bearer(no_resource_scope))
    assert_outcome(response, 403, "forbidden")


@pytest.mark.parametrize("rtype", SUPPORTED_TYPES)
def test_wildcard_scope_covers_every_type(http, token, rtype):
    assert http.get(f"/fhir/{rtype}", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("rtype", [t for t in SUPPORTED_TYPES if t != "Observation"])
def test_a_scope_grants_only_its_own_type(http, sandbox_app, me, rtype):
    token = mint_token(sandbox_app, me, "patient/Observation.rs")
    assert http.get("/fhir/Observation", headers=bearer(token)).status_code == 200
    assert_outcome(http.get(f"/fhir/{rtype}", headers=bearer(token)), 403, "forbidden")


@pytest.mark.parametrize(
    ("scope", "read_status", "search_status"),
    [
        ("patient/Observation.read", 200, 200),  # v1 read = rs
        ("patient/Observation.write", 403, 403),  # v1 write = cud
        ("patient/Observation.*", 200, 200),
        ("patient/Observation.r", 200, 403),
        ("patient/Observation.s", 403, 200),
        ("patient/Observation.cud", 403, 403),
        ("user/Observation.rs", 200, 200),
        ("system/Observation.rs", 403, 403),  # not for patient-facing tokens
        ("patient/Observation.rs?category=http://other.example|", 403, 200),  # granted, narrowly
    ],
)
def test_permission_letters(http, sandbox_app, me, scope, read_status, search_status):
    token = mint_token(sandbox_app, me, scope)
    obs = first(ME, "Observation")
    assert http.get(f"/fhir/Observation/{obs['id']}", headers=bearer(token)).status_code == (
        read_status
    )
    assert http.get("/fhir/Observation", headers=bearer(token)).status_code == search_status


def test_create_needs_the_c_permission(http, sandbox_app, me):
    token = mint_token(sandbox_app, me, "patient/Observation.rs")
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Weight"},
        "subject": {"reference": f"Patient/{me}"},
    }
    response = http.post("/fhir/Observation", json=body, headers=bearer(token))
    assert_outcome(response, 403, "forbidden")


# --- the patient compartment ------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"patient": "{other}"},
        {"patient": "Patient/{other}"},
        {"subject": "Patient/{other}"},
        {"patient": "{me},{other}"},
        {"subject": "Group/1"},
    ],
)
def test_searching_another_patient_is_403(http, token, me, other, params):
    query = {k: v.format(me=me, other=other) for k, v in params.items()}
    assert_outcome(
        http.get("/fhir/Observation", params=query, headers=bearer(token)), 403, "forbidden"
    )


@pytest.mark.parametrize("rtype", ["Observation", "Encounter", "Condition", "Claim", "Procedure"])
def test_reading_another_patients_resource_is_404(http, token, rtype):
    theirs = first(OTHER, rtype)["id"]
    assert_outcome(http.get(f"/fhir/{rtype}/{theirs}", headers=bearer(token)), 404, "not-found")
    response = http.get(f"/fhir/{rtype}/{theirs}/_history/1", headers=bearer(token))
    assert_outcome(response, 404, "not-found")


def test_another_patient_is_not_readable_nor_found(http, token, me, other):
    assert http.get(f"/fhir/Patient/{me}", headers=bearer(token)).status_code == 200
    assert_outcome(http.get(f"/fhir/Patient/{other}", headers=bearer(token)), 404, "not-found")
    found, _ = fetch_all(http, token, "/fhir/Patient", {"_id": f"{me},{other}"})
    assert [r["id"] for r in found] == [me]


def test_id_search_does_not_reach_into_another_compartment(http, token):
    theirs = first(OTHER, "Observation")["id"]
    bundle = http.get(f"/fhir/Observation?_id={theirs}", headers=bearer(token)).json()
    assert bundle["total"] == 0


def test_results_never_include_another_patient(http, token, me):
    for rtype in ("Observation", "Encounter", "Claim", "Patient"):
        found, _ = fetch_all(http, token, f"/fhir/{rtype}", {"_count": 500})
        refs = {r["id"] if rtype == "Patient" else _patient_ref(r) for r in found}
        assert refs == {me}, rtype


def _patient_ref(resource: dict[str, Any]) -> str:
    ref = (resource.get("subject") or resource.get("patient"))["reference"]
    return str(ref.removeprefix("Patient/"))


@pytest.mark.parametrize("rtype", sorted(SHARED_TYPES & {"Practitioner", "Organization"}))
def test_shared_types_are_readable_by_any_patient_token(http, token, rtype):
    theirs = first(OTHER, rtype)["id"]
    response = http.get(f"/fhir/{rtype}/{theirs}", headers=bearer(token))
    assert response.status_code == 200
    assert response.json()["id"] == theirs


def test_a_token_without_patient_context_sees_its_users_record(http, sandbox_app, me, other):
    token = mint_token(sandbox_app, me, "user/*.rs", context=False)
    found, _ = fetch_all(http, token, "/fhir/Patient")
    assert [r["id"] for r in found] == [me]
    response = http.get("/fhir/Observation", params={"patient": other}, headers=bearer(token))
    assert_outcome(response, 403, "forbidden")


# --- category-granular scopes -----------------------------------------------------------------


@pytest.fixture(scope="module")
def lab_token(sandbox_app, me) -> str:
    return mint_token(sandbox_app, me, f"launch/patient {LAB_SCOPE}")


def categories(resource: dict[str, Any]) -> set[str]:
    return {c["code"] for cat in resource["category"] for c in cat["coding"]}


def test_granular_scope_limits_search_results(http, lab_token):
    found, bundles = fetch_all(http, lab_token, "/fhir/Observation", {"_count": 25})
    assert bundles[0]["total"] == category_count(ME, "laboratory") == len(found)
    assert all(categories(r) == {"laboratory"} for r in found)


@pytest.mark.parametrize(
    "category", ["laboratory", f"{CATEGORY}|laboratory", f"{CATEGORY}|laboratory,laboratory"]
)
def test_granular_scope_allows_asking_for_the_granted_category(http, lab_token, category):
    response = http.get(
        "/fhir/Observation", params={"category": category}, headers=bearer(lab_token)
    )
    assert response.status_code == 200
    assert response.json()["total"] == category_count(ME, "laboratory")


@pytest.mark.parametrize(
    "category",
    ["vital-signs", f"{CATEGORY}|survey", "laboratory,vital-signs", "http://x|laboratory"],
)
def test_granular_scope_refuses_asking_for_another_category(http, lab_token, category):
    response = http.get(
        "/fhir/Observation", params={"category": category}, headers=bearer(lab_token)
    )
    assert_outcome(response, 403, "forbidden")


def test_granular_scope_on_read(http, lab_token):
    lab = first(ME, "Observation", "laboratory")["id"]
    vital = first(ME, "Observation", "vital-signs")["id"]
    assert http.get(f"/fhir/Observation/{lab}", headers=bearer(lab_token)).status_code == 200
    response = http.get(f"/fhir/Observation/{vital}", headers=bearer(lab_token))
    assert_outcome(response, 403, "forbidden")
    response = http.get(f"/fhir/Observation/{vital}/_history/1", headers=bearer(lab_token))
    assert_outcome(response, 403, "forbidden")


def test_granular_scope_still_hides_other_patients(http, lab_token):
    theirs = first(OTHER, "Observation", "laboratory")["id"]
    response = http.get(f"/fhir/Observation/{theirs}", headers=bearer(lab_token))
    assert_outcome(response, 404, "not-found")


def test_a_trailing_comma_in_a_granular_scope_grants_nothing_more(http, sandbox_app, me):
    token = mint_token(sandbox_app, me, f"{LAB_SCOPE},")
    bundle = http.get("/fhir/Observation?_count=0", headers=bearer(token)).json()
    assert bundle["total"] == category_count(ME, "laboratory")


def test_two_granular_grants_add_up(http, sandbox_app, me):
    scope = f"{LAB_SCOPE} patient/Observation.rs?category={CATEGORY}|vital-signs"
    token = mint_token(sandbox_app, me, scope)
    bundle = http.get("/fhir/Observation?_count=0", headers=bearer(token)).json()
    assert bundle["total"] == category_count(ME, "laboratory", "vital-signs")


def test_an_unrestricted_grant_wins_over_a_granular_one(http, sandbox_app, me):
    token = mint_token(sandbox_app, me, f"{LAB_SCOPE} patient/Observation.rs")
    bundle = http.get("/fhir/Observation?_count=0", headers=bearer(token)).json()
    assert bundle["total"] == category_count(ME, "laboratory", "vital-signs", "survey")
