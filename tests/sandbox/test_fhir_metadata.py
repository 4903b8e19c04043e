"""GET /fhir/metadata: the CapabilityStatement with SMART's security extension."""

from __future__ import annotations

import httpx
import pytest
from fhirclient.models.capabilitystatement import CapabilityStatement

from portal.db import transaction
from portal.sandbox import faults
from portal.sandbox.db import sdb
from tests.sandbox.conftest import ADMIN
from tests.sandbox.tokens import CREATABLE_TYPES, SHARED_TYPES, SUPPORTED_TYPES

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


@pytest.fixture
def statement(http: httpx.Client) -> dict:
    response = http.get("/fhir/metadata")  # no Authorization header: metadata is public
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict = response.json()
    return body


def test_is_a_valid_r4_capability_statement(statement):
    CapabilityStatement(statement, strict=True)
    assert statement["fhirVersion"] == "4.0.1"
    assert "json" in statement["format"]
    assert statement["kind"] == "instance"
    assert statement["implementation"]["url"] == "http://ehr.test/fhir"


def test_declares_smart_on_fhir_security(statement):
    security = statement["rest"][0]["security"]
    codings = [c for s in security["service"] for c in s["coding"]]
    assert {
        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
        "code": "SMART-on-FHIR",
    }.items() <= codings[0].items()
    (oauth,) = [e for e in security["extension"] if e["url"] == OAUTH_URIS]
    uris = {e["url"]: e["valueUri"] for e in oauth["extension"]}
    assert uris == {
        "authorize": "http://ehr.test/auth/authorize",
        "token": "http://ehr.test/auth/token",
        "revoke": "http://ehr.test/auth/revoke",
        "introspect": "http://ehr.test/auth/introspect",
    }


def test_lists_each_supported_type_once_with_interactions_and_search_params(statement):
    resources = statement["rest"][0]["resource"]
    assert sorted(r["type"] for r in resources) == sorted(SUPPORTED_TYPES)
    for resource in resources:
        interactions = {i["code"] for i in resource["interaction"]}
        assert {"read", "vread", "search-type"} <= interactions
        assert ("create" in interactions) == (resource["type"] in CREATABLE_TYPES)
        params = {p["name"]: p["type"] for p in resource["searchParam"]}
        assert params["_id"] == "token"
        assert params["_lastUpdated"] == "date"


@pytest.mark.parametrize(
    ("rtype", "param", "kind"),
    [
        ("Observation", "patient", "reference"),
        ("Observation", "subject", "reference"),
        ("Observation", "category", "token"),
        ("Observation", "code", "token"),
        ("Observation", "date", "date"),
        ("Condition", "clinical-status", "token"),
        ("MedicationRequest", "intent", "token"),
        ("Encounter", "type", "token"),
        ("Patient", "identifier", "token"),
    ],
)
def test_search_params_are_typed(statement, rtype, param, kind):
    (resource,) = [r for r in statement["rest"][0]["resource"] if r["type"] == rtype]
    assert {"name": param, "type": kind} in resource["searchParam"]


def test_patient_parameter_only_on_compartment_types(statement):
    for resource in statement["rest"][0]["resource"]:
        names = {p["name"] for p in resource["searchParam"]}
        in_compartment = resource["type"] not in SHARED_TYPES | {"Patient"}
        assert ("patient" in names) == in_compartment, resource["type"]


def test_faults_do_not_touch_metadata(http, sandbox_app):
    with transaction(sdb.sessionmaker(sandbox_app)) as session:
        faults.set_fault(session, "unavailable", 5)
    try:
        assert http.get("/fhir/metadata").status_code == 200
        assert http.get("/fhir/Patient").status_code == 503
    finally:
        http.delete("/admin/faults", auth=ADMIN)
