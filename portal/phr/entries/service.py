"""The patient's own entries: saved as FHIR resources of their "self" source, never lost.

An entry is the FhirRecord of a resource in the person's self source (see
`EhrConnection.kind`), so every records page reads it like a clinic's. Each save adds an
EntryRevision (the first, edits, delete, undo); a delete marks the resource
`entered-in-error` (hidden everywhere, the FHIR way) and can be undone; nothing is removed.
Entries are kept locally whatever the state of the clinics: no EHR is involved in saving.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.db import upsert_insert, utcnow
from portal.models import Account, EhrConnection, EntryRevision, FhirRecord
from portal.phr.classify import classify
from portal.phr.entries import shapes
from portal.phr.entries.catalog import Measure

SELF = "self"


class EntryNotFound(LookupError):
    """Not an entry of this person (or none at all)."""


@dataclass(frozen=True)
class MeasurementInput:
    """A measurement as the form checked it (values in the unit the patient chose)."""

    measure: Measure
    values: tuple[Decimal, ...]
    unit: str
    when: datetime
    note: str | None


@dataclass(frozen=True)
class Revision:
    version: int
    action: str
    changed_at: datetime
    raw: dict[str, Any]


def own_source(session: Session, account: Account) -> EhrConnection:
    """The person's "self" source, made on first use (one per person, even under a race)."""
    found = _find_own(session, account.id)
    if found is not None:
        return found
    session.execute(
        upsert_insert(session.get_bind().dialect.name, EhrConnection.__table__)
        .values(
            account_id=account.id,
            kind=SELF,
            ehr_server_id=None,
            patient_id=uuid.uuid4().hex,
            status="active",
            requested_scope="",
            granted_scope="",
            need_patient_banner=True,
            data_version=0,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["account_id"], index_where=sa.text("kind = 'self'"))
    )
    found = _find_own(session, account.id)
    assert found is not None
    return found


def _find_own(session: Session, account_id: int) -> EhrConnection | None:
    return session.scalar(
        sa.select(EhrConnection).where(
            EhrConnection.account_id == account_id, EhrConnection.kind == SELF
        )
    )


def patient_reference(source: EhrConnection, account: Account) -> dict[str, str]:
    reference = {"reference": f"Patient/{source.patient_id}"}
    if account.display_name:
        reference["display"] = account.display_name
    return reference


# Builds an entry's resource from (patient reference, resource id, business identifier).
Builder = Callable[[dict[str, str], str, str], dict[str, Any]]


def add(session: Session, account: Account, build: Builder) -> FhirRecord:
    """Keep a new entry (with its Provenance and first revision)."""
    source = own_source(session, account)
    patient = patient_reference(source, account)
    resource = build(patient, uuid.uuid4().hex, f"urn:uuid:{uuid.uuid4()}")
    return _save(session, account, source, None, resource, "created")


def edit(session: Session, account: Account, record_id: int, build: Builder) -> FhirRecord:
    """A new version of an entry (same id and identifier); earlier ones stay in its history."""
    record = entry_of(session, account, record_id)
    source = own_source(session, account)
    identifier = _identifier(record.raw) or f"urn:uuid:{uuid.uuid4()}"
    resource = build(patient_reference(source, account), record.resource_id, identifier)
    if resource["resourceType"] != record.resource_type:
        raise EntryNotFound(record_id)
    return _save(session, account, source, record, resource, "edited")


def add_measurement(session: Session, account: Account, entry: MeasurementInput) -> FhirRecord:
    """Keep a new measurement."""
    return add(session, account, _measurement(entry))


def edit_measurement(
    session: Session, account: Account, record_id: int, entry: MeasurementInput
) -> FhirRecord:
    """A new version of a measurement."""
    return edit(session, account, record_id, _measurement(entry))


def delete(session: Session, account: Account, record_id: int) -> FhirRecord:
    """Hide an entry everywhere (entered-in-error); `restore` undoes it."""
    record = entry_of(session, account, record_id)
    if shapes.is_deleted(record.raw):
        return record
    resource = shapes.mark_deleted(copy.deepcopy(record.raw))
    return _save(session, account, own_source(session, account), record, resource, "deleted")


def is_deleted(record: FhirRecord) -> bool:
    return shapes.is_deleted(record.raw)


def restore(session: Session, account: Account, record_id: int) -> FhirRecord:
    """Undo a delete: the entry as it was just before it."""
    record = entry_of(session, account, record_id)
    if not shapes.is_deleted(record.raw):
        return record
    before = next((r for r in history(session, account, record_id) if r.action != "deleted"), None)
    if before is None:
        raise EntryNotFound(record_id)
    resource = copy.deepcopy(before.raw)
    return _save(session, account, own_source(session, account), record, resource, "restored")


def entry_of(session: Session, account: Account, record_id: int) -> FhirRecord:
    """One of this person's own entries (deleted ones too), else EntryNotFound."""
    record = session.scalar(
        sa.select(FhirRecord)
        .join(EhrConnection, EhrConnection.id == FhirRecord.connection_id)
        .where(
            FhirRecord.id == record_id,
            EhrConnection.account_id == account.id,
            EhrConnection.kind == SELF,
            FhirRecord.resource_type != "Provenance",
        )
    )
    if record is None:
        raise EntryNotFound(record_id)
    return record


def history(session: Session, account: Account, record_id: int) -> list[Revision]:
    """Every version of an entry, newest first."""
    entry_of(session, account, record_id)
    rows = session.scalars(
        sa.select(EntryRevision)
        .where(EntryRevision.record_id == record_id)
        .order_by(EntryRevision.version.desc())
    )
    return [Revision(r.version, r.action, r.changed_at, r.raw) for r in rows]


def _measurement(entry: MeasurementInput) -> Builder:
    def build(patient: dict[str, str], resource_id: str, identifier: str) -> dict[str, Any]:
        return shapes.measurement(
            entry.measure,
            entry.values,
            entry.unit,
            resource_id=resource_id,
            identifier=identifier,
            patient=patient,
            when=entry.when,
            note=entry.note,
        )

    return build


def _identifier(raw: dict[str, Any]) -> str | None:
    for ident in raw.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == shapes.IDENTIFIER_SYSTEM:
            value = ident.get("value")
            return value if isinstance(value, str) else None
    return None


def _save(
    session: Session,
    account: Account,
    source: EhrConnection,
    record: FhirRecord | None,
    resource: dict[str, Any],
    action: str,
) -> FhirRecord:
    now = utcnow()
    version = 1 if record is None else int(record.version_id or "1") + 1
    resource["meta"] = {
        **(resource.get("meta") or {}),
        "versionId": str(version),
        "lastUpdated": shapes.instant(now),
    }
    shapes.check(resource)
    patient = patient_reference(source, account)
    provenance = shapes.check(shapes.provenance(resource, version, patient, now))
    if record is None:
        record = FhirRecord(
            connection_id=source.id,
            resource_type=resource["resourceType"],
            resource_id=resource["id"],
            fetched_at=now,
        )
        session.add(record)
    _columns(record, resource, now)
    session.add(_columns(FhirRecord(connection_id=source.id, fetched_at=now), provenance, now))
    session.flush()
    session.add(
        EntryRevision(
            record_id=record.id,
            version=version,
            action=action,
            raw=copy.deepcopy(resource),
            changed_at=now,
            changed_by=account.id,
        )
    )
    changed(source)
    session.flush()
    return record


def changed(source: EhrConnection) -> None:
    """The person's own part of the record changed: their prepared pages must miss.

    An SQL increment, so two saves at once count twice."""
    source.data_version = EhrConnection.data_version + 1


def _columns(record: FhirRecord, resource: dict[str, Any], now: datetime) -> FhirRecord:
    c = classify(resource)
    meta = resource.get("meta") or {}
    record.resource_type = resource["resourceType"]
    record.resource_id = resource["id"]
    record.version_id = meta.get("versionId")
    record.last_updated = now
    record.fetched_at = now
    record.category = c.category
    record.status = c.status
    record.code_system = c.code_system
    record.code = c.code
    record.display = c.display
    record.effective_at = c.effective_at
    record.encounter_ref = c.encounter_ref
    record.raw = resource
    return record
