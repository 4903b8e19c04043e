"""Loading FHIR resources into the store and indexing the values searches filter on."""

from __future__ import annotations

import gzip
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.sandbox.models import FhirHistory, FhirResource, FhirToken

# Where each type points at its patient (first match wins), after the R4 Patient compartment
# definition; element paths are dotted, lists are walked.
PATIENT_REFERENCE_PATHS = ("subject", "patient", "beneficiary", "individual")
TYPE_PATIENT_PATHS: dict[str, tuple[str, ...]] = {
    "Appointment": ("participant.actor",),
    "Binary": ("securityContext",),  # or a resource of the patient: see context_patient
    "CareTeam": ("subject", "participant.member"),
    "Communication": ("subject", "sender", "recipient"),
    "Coverage": ("beneficiary", "subscriber", "policyHolder", "payor"),
    "DocumentReference": ("subject", "author"),
    "Provenance": ("target",),
}

# Token search parameters: param -> element holding CodeableConcept(s) / Coding(s) / code.
TOKEN_PARAMS: dict[str, tuple[str, ...]] = {
    "category": ("category",),
    "code": ("code", "vaccineCode", "medicationCodeableConcept"),
    "status": ("status",),
    "clinical-status": ("clinicalStatus",),
    "verification-status": ("verificationStatus",),
    "intent": ("intent",),
    "type": ("type",),
    "identifier": ("identifier",),
    "lifecycle-status": ("lifecycleStatus",),
}

# Elements searched by `date`, in order of preference.
DATE_ELEMENTS = (
    "effectiveDateTime",
    "effectivePeriod",
    "effectiveInstant",
    "issued",
    "onsetDateTime",
    "onsetPeriod",
    "recordedDate",
    "performedDateTime",
    "performedPeriod",
    "occurrenceDateTime",
    "period",
    "authoredOn",
    "date",
    "created",
    "started",
    "billablePeriod",
    "sent",
    "start",
    "occurredDateTime",
    "occurredPeriod",
    "recorded",
    "startDate",
)


@dataclass
class LoadResult:
    """What one bundle brought into the store."""

    patient_id: str | None = None
    counts: Counter[str] = field(default_factory=Counter)


def read_bundle_file(path: Path) -> dict[str, Any]:
    """Read a bundle from `.json` or `.json.gz`."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def remap_ids(bundle: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The same bundle with every id (and every reference to it) replaced by a uuid5.

    Used to host one person at a second EHR, under that EHR's own ids.
    """
    ns = uuid.uuid5(uuid.NAMESPACE_URL, namespace)
    mapping = {
        e["resource"]["id"]: str(uuid.uuid5(ns, e["resource"]["id"])) for e in bundle["entry"]
    }
    text = json.dumps(bundle)
    for old, new in mapping.items():
        text = text.replace(old, new)
    remapped: dict[str, Any] = json.loads(text)
    return remapped


def load_bundle(
    session: Session, bundle: dict[str, Any], id_namespace: str | None = None
) -> LoadResult:
    """Store every resource of a transaction/collection bundle, resolving urn:uuid references.

    Resources already present with the same type and id (shared Organizations and
    Practitioners) are kept once.
    """
    if id_namespace:
        bundle = remap_ids(bundle, id_namespace)
    entries = bundle.get("entry", [])
    urn_map = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in entries
        if e.get("fullUrl", "").startswith("urn:uuid:")
    }
    result = LoadResult()
    existing = _existing_keys(session, entries)
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for entry in entries:
        resource = _resolve_references(entry["resource"], urn_map)
        rtype, rid = resource["resourceType"], resource["id"]
        result.counts[rtype] += 1
        if rtype == "Patient":
            result.patient_id = rid
        if (rtype, rid) in existing:
            continue
        existing.add((rtype, rid))
        rows.append(_resource_row(resource, now))
    loaded = {(r["resource_type"], r["resource_id"]): r["patient_id"] for r in rows}
    for row in rows:
        if row["resource_type"] == "Binary" and row["patient_id"] is None:
            row["patient_id"] = context_patient(session, row["content"], loaded)
    _bulk_insert(session, rows)
    return result


def _bulk_insert(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert resources, their tokens and history rows in a few multi-row statements.

    The ORM unit of work costs more than the JSON itself for thousands of small objects.
    """
    if not rows:
        return
    session.flush()  # anything pending goes first, so the statements below see it
    pks = session.scalars(
        sa.insert(FhirResource)
        .execution_options(render_nulls=True)
        .returning(FhirResource.pk, sort_by_parameter_order=True),
        [{k: v for k, v in row.items() if k != "tokens"} | {"version_id": 1} for row in rows],
    ).all()
    tokens = [
        {"resource_pk": pk, "param": p, "system": s, "code": c}
        for pk, row in zip(pks, rows, strict=True)
        for p, s, c in row["tokens"]
    ]
    # RETURNING makes SQLAlchemy batch the rows into multi-row VALUES (insertmanyvalues) on
    # every backend; a plain executemany is one statement per row on psycopg.
    if tokens:
        session.execute(
            sa.insert(FhirToken).execution_options(render_nulls=True).returning(FhirToken.id),
            tokens,
        )
    session.execute(
        sa.insert(FhirHistory).returning(FhirHistory.version_id),
        [
            {
                "resource_type": row["resource_type"],
                "resource_id": row["resource_id"],
                "version_id": 1,
                "content": row["content"],
            }
            for row in rows
        ],
    )


def _resource_row(resource: dict[str, Any], when: datetime) -> dict[str, Any]:
    """Column values of a new resource at version 1 (meta set), plus its token rows."""
    resource = with_meta(resource, 1, when)
    return {
        "resource_type": resource["resourceType"],
        "resource_id": resource["id"],
        "last_updated": when,
        "content": resource,
        "tokens": index_tokens(resource),
        **index_columns(resource),
    }


def with_meta(resource: dict[str, Any], version: int, when: datetime) -> dict[str, Any]:
    """A copy of `resource` whose meta carries the server's versionId and lastUpdated."""
    return {
        **resource,
        "meta": {
            **resource.get("meta", {}),
            "versionId": str(version),
            "lastUpdated": when.isoformat().replace("+00:00", "Z"),
        },
    }


def add_resource(
    session: Session, resource: dict[str, Any], when: datetime | None = None
) -> FhirResource:
    """Insert a new resource at version 1 with its search index and history row."""
    values = _resource_row(resource, when or utcnow())
    if values["resource_type"] == "Binary" and values["patient_id"] is None:
        values["patient_id"] = context_patient(session, resource)
    tokens = values.pop("tokens")
    row = FhirResource(version_id=1, **values)
    row.tokens = [FhirToken(param=p, system=s, code=c) for p, s, c in tokens]
    session.add(row)
    session.add(
        FhirHistory(
            resource_type=row.resource_type,
            resource_id=row.resource_id,
            version_id=1,
            content=row.content,
        )
    )
    return row


def _existing_keys(session: Session, entries: list[dict[str, Any]]) -> set[tuple[str, str]]:
    ids = [e["resource"]["id"] for e in entries]
    keys: set[tuple[str, str]] = set()
    for chunk in range(0, len(ids), 500):
        rows = session.execute(
            sa.select(FhirResource.resource_type, FhirResource.resource_id).where(
                FhirResource.resource_id.in_(ids[chunk : chunk + 500])
            )
        )
        keys.update((t, i) for t, i in rows)
    return keys


def _resolve_references(value: Any, urn_map: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {k: _resolve_references(v, urn_map) for k, v in value.items()}
        ref = out.get("reference")
        if isinstance(ref, str) and ref in urn_map:
            out["reference"] = urn_map[ref]
        return out
    if isinstance(value, list):
        return [_resolve_references(v, urn_map) for v in value]
    return value


def patient_of(resource: dict[str, Any]) -> str | None:
    """The id of the patient whose compartment holds this resource, if any."""
    if resource["resourceType"] == "Patient":
        return str(resource["id"])
    for path in TYPE_PATIENT_PATHS.get(resource["resourceType"], PATIENT_REFERENCE_PATHS):
        for ref in references_at(resource, path):
            if ref.startswith("Patient/"):
                return ref.split("/", 1)[1]
    return None


def context_patient(
    session: Session,
    resource: dict[str, Any],
    loading: dict[tuple[str, str], str | None] | None = None,
) -> str | None:
    """The patient of a Binary whose securityContext is another resource of that patient
    (e.g. its DocumentReference): the resource being loaded with it, or one already stored.

    One step only (a Binary never lends its compartment to another Binary); a reference that
    is absolute, versioned or points nowhere known gives no patient, so no patient sees it.
    """
    for ref in references_at(resource, "securityContext"):
        rtype, _, rid = ref.partition("/")
        if rtype in ("", "Binary", "Patient") or not rid or "/" in rid or ":" in rtype:
            continue
        if loading is not None and (rtype, rid) in loading:
            return loading[(rtype, rid)]
        found = session.scalar(
            sa.select(FhirResource.patient_id).where(
                FhirResource.resource_type == rtype, FhirResource.resource_id == rid
            )
        )
        if found is not None:
            return found
    return None


def references_at(resource: dict[str, Any], path: str) -> list[str]:
    """The `reference` strings found at a dotted element path, walking lists."""
    values: list[Any] = [resource]
    for name in path.split("."):
        found: list[Any] = []
        for value in values:
            item = value.get(name) if isinstance(value, dict) else None
            found.extend(item if isinstance(item, list) else [item])
        values = [v for v in found if v is not None]
    return [
        v["reference"]
        for v in values
        if isinstance(v, dict) and isinstance(v.get("reference"), str)
    ]


def index_columns(resource: dict[str, Any]) -> dict[str, Any]:
    """Patient and date columns of the search index."""
    start, end = resource_dates(resource)
    return {"patient_id": patient_of(resource), "date_start": start, "date_end": end}


def resource_dates(resource: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """The (start, end) instants `date` searches compare against."""
    for name in DATE_ELEMENTS:
        value = resource.get(name)
        if isinstance(value, str):
            return parse_fhir_date(value)
        if isinstance(value, dict) and ("start" in value or "end" in value):
            start = parse_fhir_date(value["start"])[0] if value.get("start") else None
            end = parse_fhir_date(value["end"])[1] if value.get("end") else None
            return start, end
    return None, None


def parse_fhir_date(value: str) -> tuple[datetime, datetime]:
    """A FHIR date/dateTime/instant as the (first, last) instant it covers, in UTC."""
    value = value.strip()
    if len(value) == 4:  # YYYY
        y = int(value)
        return datetime(y, 1, 1, tzinfo=UTC), datetime(y, 12, 31, 23, 59, 59, tzinfo=UTC)
    if len(value) == 7:  # YYYY-MM
        y, m = int(value[:4]), int(value[5:7])
        nxt = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
        return datetime(y, m, 1, tzinfo=UTC), datetime.fromtimestamp(nxt.timestamp() - 1, UTC)
    if len(value) == 10:  # YYYY-MM-DD
        d = datetime.fromisoformat(value).replace(tzinfo=UTC)
        return d, d.replace(hour=23, minute=59, second=59)
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return dt, dt


def index_tokens(resource: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    """(param, system, code) rows for the token search parameters."""
    rows: list[tuple[str, str | None, str]] = []
    for param, elements in TOKEN_PARAMS.items():
        for element in elements:
            for system, code in _codes(resource.get(element)):
                rows.append((param, system, code))
    return rows


def _codes(value: Any) -> list[tuple[str | None, str]]:
    if value is None:
        return []
    if isinstance(value, str):
        return [(None, value)]
    if isinstance(value, list):
        return [c for v in value for c in _codes(v)]
    if isinstance(value, dict):
        if "coding" in value:
            return [(c.get("system"), c["code"]) for c in value["coding"] if c.get("code")]
        if "code" in value and isinstance(value["code"], str):
            return [(value.get("system"), value["code"])]
        if "value" in value and isinstance(value["value"], str):  # Identifier
            return [(value.get("system"), value["value"])]
    return []
