"""Helpers of the FHIR API tests: access tokens minted straight into a sandbox's database,
sandboxes with stores of their own, following next links, checking OperationOutcomes.

The OAuth flow that issues real tokens is tested on its own; FHIR API tests only need a row.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from fhirclient.models.operationoutcome import OperationOutcome
from flask import Flask

from portal.db import transaction
from portal.sandbox.app import create_sandbox_app
from portal.sandbox.db import sdb
from portal.sandbox.fhir.store import LoadResult, load_bundle
from portal.sandbox.models import Client, PatientUser, Token, secret_hash
from tests.sandbox.conftest import BASE_URL, sandbox_database

FHIR_JSON = "application/fhir+json"

# The types the issue asks for, spelled out here so a type dropped from the registry fails.
SUPPORTED_TYPES = [
    "Patient",
    "AllergyIntolerance",
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "Medication",
    "Immunization",
    "Observation",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "Procedure",
    "CarePlan",
    "CareTeam",
    "Goal",
    "Coverage",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Provenance",
    "ImagingStudy",
    "Claim",
    "ExplanationOfBenefit",
    "Communication",
    "Appointment",
    "Binary",
]
CREATABLE_TYPES = {
    "Observation",
    "Condition",
    "AllergyIntolerance",
    "MedicationRequest",
    "MedicationStatement",
    "Immunization",
    "Communication",
    "Appointment",
    "Provenance",
    "DocumentReference",
}
SHARED_TYPES = {"Practitioner", "PractitionerRole", "Organization", "Location", "Medication"}


def mint_token(
    app: Flask,
    patient_id: str,
    scope: str = "patient/*.cruds",
    *,
    context: bool = True,
    expires_in: int = 3600,
    issued_at: int | None = None,
    revoked: bool = False,
) -> str:
    """A new bearer token of a new patient login and app; `context=False` omits `patient`."""
    raw = secrets.token_urlsafe(32)
    tag = uuid.uuid4().hex[:12]
    with transaction(sdb.sessionmaker(app)) as session:
        user = PatientUser(
            username=f"test-{tag}",
            password_hash="!",  # cannot log in: these users exist only to own tokens
            patient_id=patient_id,
            display_name="Test Patient",
        )
        client = Client(
            client_id=f"test-app-{tag}",
            name="Test app",
            client_type="public",
            redirect_uris=["http://app.test/callback"],
            allowed_scope=scope,
        )
        session.add_all([user, client])
        session.flush()
        session.add(
            Token(
                client_id=client.client_id,
                user_id=user.id,
                access_token_hash=secret_hash(raw),
                scope=scope,
                issued_at=int(time.time()) if issued_at is None else issued_at,
                expires_in=expires_in,
                access_revoked=revoked,
                patient_id=patient_id if context else None,
            )
        )
    return raw


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for `token`."""
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def separate_sandbox(
    slug: str, instance_dir: Path, bundles: Iterable[dict[str, Any]] = ()
) -> Iterator[tuple[Flask, list[LoadResult]]]:
    """A sandbox instance with its own fresh store, for tests that write or need other data.

    The shared `sandbox_app` store must keep exactly the shipped test patients.
    """
    url, schema = sandbox_database(slug, instance_dir)
    app = create_sandbox_app(
        {
            "TESTING": True,
            "NAME": f"Test {slug}",
            "SLUG": slug,
            "BASE_URL": BASE_URL,
            "DATABASE_URL": url,
            "DB_SCHEMA": schema,
            "FAULTS_ENABLED": True,
        }
    )
    results = []
    for bundle in bundles:  # one transaction per bundle, as the CLI loads them
        with transaction(sdb.sessionmaker(app)) as session:
            results.append(load_bundle(session, bundle))
    try:
        yield app, results
    finally:
        sdb.engine(app).dispose()


def fetch_all(
    http: httpx.Client, token: str, path: str, params: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(resources, bundles) of a search, following every next link."""
    resources: list[dict[str, Any]] = []
    bundles: list[dict[str, Any]] = []
    response = http.get(path, params=params, headers=bearer(token))
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        bundles.append(bundle)
        resources.extend(e["resource"] for e in bundle.get("entry", []))
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not nxt:
            return resources, bundles
        assert len(bundles) < 1000, "next links do not end"
        response = http.get(nxt[0], headers=bearer(token))


def assert_outcome(response: httpx.Response, status: int, code: str) -> dict:
    """The response is an OperationOutcome error with this status and issue code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body: dict = response.json()
    OperationOutcome(body, strict=True)
    assert body["resourceType"] == "OperationOutcome"
    (issue,) = body["issue"]
    assert issue["severity"] in ("error", "fatal")
    assert issue["code"] == code
    assert issue["diagnostics"]
    return body
