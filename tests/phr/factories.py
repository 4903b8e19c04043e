"""Test data for the records pages: accounts, EHR connections, and stored records from bundles.

Bundles are loaded the way a FHIR server would serve them: `urn:uuid:` references become
`Type/id`, and each resource is stored with the columns `classify()` gives it.
"""

from __future__ import annotations

import copy
import gzip
import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import Account, EhrConnection, EhrServer, FhirRecord
from portal.phr.classify import classify
from portal.sync import store
from tests.conftest import SHARED_FHIR

REPO = Path(__file__).resolve().parent.parent.parent
SANDBOX_DATA = REPO / "portal" / "sandbox" / "data"
SHARED = SHARED_FHIR
ALL_SCOPE = "openid fhirUser patient/*.rs"


@lru_cache(maxsize=16)
def _bundle_text(name: str) -> str:
    path = SANDBOX_DATA / f"{name}.json.gz"
    if path.exists():
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return fh.read()
    matches = sorted(SHARED.glob(f"{name}*.json"))
    if not matches:
        raise FileNotFoundError(name)
    return matches[0].read_text(encoding="utf-8")


def bundle(name: str) -> dict[str, Any]:
    """A Synthea bundle by its sandbox name (`vito_feeney`) or shared file prefix."""
    data: dict[str, Any] = json.loads(_bundle_text(name))
    return data


def resolved_resources(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The bundle's resources with `urn:uuid:` references turned into `Type/id`."""
    entries = data.get("entry", [])
    urns = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in entries
        if str(e.get("fullUrl", "")).startswith("urn:uuid:")
    }
    return [_resolve(e["resource"], urns) for e in entries]


def _resolve(value: Any, urns: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {k: _resolve(v, urns) for k, v in value.items()}
        ref = out.get("reference")
        if isinstance(ref, str) and ref in urns:
            out["reference"] = urns[ref]
        return out
    if isinstance(value, list):
        return [_resolve(v, urns) for v in value]
    return value


def count_category(resources: Iterable[dict[str, Any]], category: str) -> int:
    """How many resources classify() puts in `category` (entered-in-error left out)."""
    return sum(
        1
        for r in resources
        if (c := classify(r)).category == category and c.status != "entered-in-error"
    )


def make_account(session: Session, name: str = "Test Patient", email: str | None = None) -> Account:
    account = Account(email=email or f"{uuid.uuid4().hex[:10]}@example.org", display_name=name)
    session.add(account)
    session.flush()
    return account


def make_ehr(session: Session, name: str, fhir_base: str | None = None) -> EhrServer:
    existing = session.scalar(sa.select(EhrServer).where(EhrServer.name == name))
    if existing:
        return existing
    ehr = EhrServer(
        name=name,
        fhir_base=fhir_base or f"https://{uuid.uuid4().hex[:8]}.ehr.example/fhir",
        client_id="portal",
    )
    session.add(ehr)
    session.flush()
    return ehr


def make_connection(
    session: Session,
    account: Account,
    ehr_name: str = "Riverside General Hospital",
    *,
    fhir_base: str | None = None,
    granted_scope: str = ALL_SCOPE,
    patient_id: str | None = None,
    **columns: Any,
) -> EhrConnection:
    """An active connection of `account` to an EHR (created when needed), all scopes granted."""
    ehr = make_ehr(session, ehr_name, fhir_base)
    connection = EhrConnection(
        account_id=account.id,
        ehr_server_id=ehr.id,
        patient_id=patient_id or uuid.uuid4().hex[:16],
        granted_scope=granted_scope,
        requested_scope=ALL_SCOPE,
        **columns,
    )
    session.add(connection)
    session.flush()
    return connection


def record_row(
    connection: EhrConnection, resource: dict[str, Any], fetched_at: datetime
) -> dict[str, Any]:
    """The columns the sync stores for a resource."""
    return store.record_row(connection.id, resource, fetched_at)


def add_resources(
    session: Session, connection: EhrConnection, resources: Iterable[dict[str, Any]]
) -> int:
    """Store resources for a connection as the sync would (one multi-row insert)."""
    now = utcnow()
    rows = [record_row(connection, r, now) for r in resources]
    if rows:
        session.execute(sa.insert(FhirRecord), rows)
        connection.data_version += 1  # as the sync does: prepared pages must miss
        session.flush()
    return len(rows)


def add_bundle(
    session: Session, connection: EhrConnection, name_or_bundle: str | dict[str, Any]
) -> list[dict[str, Any]]:
    """Load a bundle's resources for a connection; returns them (references resolved)."""
    data = bundle(name_or_bundle) if isinstance(name_or_bundle, str) else name_or_bundle
    resources = resolved_resources(data)
    add_resources(session, connection, resources)
    return resources


def patient_with(
    session: Session,
    bundle_name: str,
    *,
    name: str = "Test Patient",
    ehr_name: str = "Riverside General Hospital",
    **connection_columns: Any,
) -> tuple[Account, EhrConnection, list[dict[str, Any]]]:
    """An account with one connection holding a whole Synthea patient."""
    account = make_account(session, name)
    connection = make_connection(session, account, ehr_name, **connection_columns)
    resources = add_bundle(session, connection, bundle_name)
    return account, connection, resources


def variant(resource: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of a resource with a new id and some elements replaced."""
    copied = copy.deepcopy(resource)
    copied["id"] = uuid.uuid4().hex
    copied.update(changes)
    return copied


# ---- resources Synthea v2.4 does not have -------------------------------------------------

MINIMAL_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def text_note(patient_ref: str, text: str, *, title: str = "Visit note") -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "id": uuid.uuid4().hex,
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}], "text": title},
        "subject": {"reference": patient_ref},
        "date": "2023-03-14T10:00:00Z",
        "author": [{"display": "Dr. Ana O'Neil"}],
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": _b64(text.encode()),
                    "title": title,
                }
            }
        ],
    }


def html_note(patient_ref: str, markup: str) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "id": uuid.uuid4().hex,
        "status": "current",
        "type": {"text": "Discharge summary"},
        "subject": {"reference": patient_ref},
        "date": "2023-02-01",
        "content": [
            {
                "attachment": {
                    "contentType": "text/html",
                    "data": _b64(markup.encode()),
                    "title": "Discharge summary",
                }
            }
        ],
    }


def pdf_report(patient_ref: str) -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport",
        "id": uuid.uuid4().hex,
        "status": "final",
        "category": [{"coding": [{"code": "RAD"}], "text": "Imaging"}],
        "code": {"text": "Chest X-ray report"},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": "2023-01-10",
        "conclusion": "No acute findings.",
        "presentedForm": [
            {
                "contentType": "application/pdf",
                "data": _b64(MINIMAL_PDF),
                "title": "Chest X-ray.pdf",
            }
        ],
    }


def coverage(patient_ref: str, payer: str = "Blue Harbor Health") -> dict[str, Any]:
    return {
        "resourceType": "Coverage",
        "id": uuid.uuid4().hex,
        "status": "active",
        "type": {"text": "Health insurance"},
        "subscriberId": "BH-5542-871",
        "beneficiary": {"reference": patient_ref},
        "relationship": {"coding": [{"code": "self", "display": "Self"}]},
        "period": {"start": "2021-01-01"},
        "payor": [{"display": payer}],
        "class": [
            {
                "type": {"coding": [{"code": "plan"}], "text": "Plan"},
                "value": "G-77",
                "name": "Gold 500",
            }
        ],
    }


def care_team(patient_ref: str, practitioner_ref: str | None = None) -> dict[str, Any]:
    member = {"reference": practitioner_ref} if practitioner_ref else {"display": "Dr. Lee Park"}
    return {
        "resourceType": "CareTeam",
        "id": uuid.uuid4().hex,
        "status": "active",
        "name": "Diabetes care team",
        "subject": {"reference": patient_ref},
        "period": {"start": "2020-05-01"},
        "participant": [
            {"role": [{"text": "Family doctor"}], "member": member},
            {"role": [{"text": "Diabetes nurse"}], "member": {"display": "Sam Rivera, RN"}},
        ],
    }


def with_range(
    observation: dict[str, Any], low: float | None, high: float | None
) -> dict[str, Any]:
    """The observation with a reference range in its own unit."""
    unit = observation["valueQuantity"].get("code")
    rng: dict[str, Any] = {}
    if low is not None:
        rng["low"] = {
            "value": low,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        }
    if high is not None:
        rng["high"] = {
            "value": high,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        }
    return {**observation, "referenceRange": [rng]}
