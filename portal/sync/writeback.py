"""Sending the patient's own entries to a clinic that lets the portal add to its record.

Offered only where the clinic granted create for the entry's type (`patient/Observation.c`,
v1 `.write`); the page says why otherwise. An entry goes as it is kept (US Core shape, the
patient as author), its references to the patient re-pointed at the clinic's Patient, and
POSTed with `If-None-Exist: identifier=<its identifier>`: a retry, or a second worker, finds
the copy the clinic already has instead of making another. The clinic's id is recorded.
Failures that may pass (clinic down, 429/503) are retried later with growing delays (the
`portal sync` sweep and "Try again"); a refusal is shown in words and not retried.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from portal.db import transaction, utcnow
from portal.extensions import db
from portal.jobs import job
from portal.leases import Lease
from portal.models import Account, EhrConnection, FhirRecord, WriteBack
from portal.models import WriteBackState as State
from portal.phr.classify import codes_of
from portal.phr.entries import service, shapes
from portal.smart.errors import ConnectionUnavailable, EhrUnavailable, FhirRequestError, SmartError
from portal.smart.fhir import FhirClient
from portal.smart.scopes import can_create
from portal.smart.settings import SmartSettings, resolve
from portal.smart.tokens import TokenSource

log = logging.getLogger(__name__)

# What a clinic would be adding, in words ("Riverside did not allow this app to add ...").
WORDS = {
    "Observation": "readings",
    "Condition": "conditions and symptoms",
    "AllergyIntolerance": "allergies",
    "MedicationRequest": "medicines",
    "Immunization": "vaccines",
    "DocumentReference": "notes",
}
RETRY_DELAYS = (60, 300, 1800, 7200, 21600)  # seconds after the 1st, 2nd, ... failure
MAX_ATTEMPTS = 8
STUCK = timedelta(minutes=5)  # a send claimed longer ago than this was cut off: due again
# A send's lease: stamped when claimed (a POST takes seconds; one that long was cut off).
LEASE = Lease(WriteBack.updated_at, STUCK.total_seconds())


class NotAllowed(Exception):
    """This entry cannot be sent to this clinic; the message says why, in words."""


@dataclass(frozen=True)
class Target:
    """A clinic an entry could go to, and how that stands."""

    connection_id: int
    clinic: str
    can_send: bool
    why_not: str | None
    state: State | None  # None: never sent
    server_id: str | None
    error: str | None
    next_attempt_at: datetime | None
    changed_since: bool  # the entry was edited after it was sent


def category(raw: dict[str, Any]) -> str | None:
    """The category a create grant may be limited to (Observation only in US Core scopes)."""
    if raw.get("resourceType") != "Observation":
        return None
    codes = codes_of(raw.get("category"))
    return codes[0] if codes else None


def why_not(connection: EhrConnection, raw: dict[str, Any]) -> str | None:
    """Why this entry cannot go to this clinic (None: it can)."""
    name = connection.source_name
    if connection.status != "active":
        return f"Your connection to {name} has ended: connect again to send entries there."
    rtype = raw.get("resourceType", "")
    if not can_create(connection.granted_scope or "", rtype, category(raw)):
        words = WORDS.get(rtype, "entries")
        return (
            f"{name} did not allow this app to add {words} to your record there, so it "
            "cannot be sent. Your entry stays in this portal."
        )
    return None


def targets(session: Session, account: Account, record: FhirRecord) -> list[Target]:
    """Every clinic of the patient, with whether and how this entry was sent there."""
    sent = {
        w.connection_id: w
        for w in session.scalars(sa.select(WriteBack).where(WriteBack.record_id == record.id))
    }
    clinics = session.scalars(
        sa.select(EhrConnection)
        .where(EhrConnection.account_id == account.id, EhrConnection.kind == "ehr")
        .order_by(EhrConnection.id)
    )
    out = []
    for c in clinics:
        w = sent.get(c.id)
        reason = why_not(c, record.raw)
        out.append(
            Target(
                connection_id=c.id,
                clinic=c.source_name,
                can_send=reason is None,
                why_not=reason,
                state=w.state if w else None,
                server_id=w.server_id if w else None,
                error=w.error if w else None,
                next_attempt_at=w.next_attempt_at if w else None,
                changed_since=bool(
                    w and w.state is State.SENT and w.version_sent != record.version_id
                ),
            )
        )
    return out


@dataclass(frozen=True)
class Queued:
    """What asking to send an entry did: `fresh` when it is now queued (a job is to be
    enqueued), else why nothing was done (`already`, in words)."""

    writeback: WriteBack
    fresh: bool
    already: str | None = None


def queue(session: Session, account: Account, record_id: int, connection_id: int) -> Queued:
    """Mark an entry to be sent to a clinic (the first time, or again after a failure).

    Sent is sent: an entry the clinic has (or that is on its way, a stale second tab's
    "Send again") is not queued again, and a retry keeps its count of attempts."""
    record = service.entry_of(session, account, record_id)
    if shapes.is_deleted(record.raw):
        raise NotAllowed("A deleted entry is not sent anywhere.")
    connection = session.get(EhrConnection, connection_id)
    if connection is None or connection.account_id != account.id or connection.is_self:
        raise service.EntryNotFound(connection_id)
    reason = why_not(connection, record.raw)
    if reason is not None:
        raise NotAllowed(reason)
    found = session.scalar(
        sa.select(WriteBack)
        .where(WriteBack.record_id == record_id, WriteBack.connection_id == connection_id)
        .with_for_update()  # two tabs at once: one queues it, the other sees it queued
    )
    clinic = connection.source_name
    if found is not None and found.state is State.SENT:
        return Queued(found, False, f"{clinic} already has it.")
    if found is not None and found.state in (State.QUEUED, State.SENDING):
        return Queued(found, False, f"It is already being sent to {clinic}.")
    if found is None:
        found = WriteBack(record_id=record_id, connection_id=connection_id, attempts=0)
        session.add(found)
    found.state = State.QUEUED
    found.error = None
    found.next_attempt_at = None
    found.updated_at = utcnow()
    session.flush()
    return Queued(found, True)


def for_clinic(raw: dict[str, Any], own: str, clinic_patient: str) -> dict[str, Any]:
    """The entry as the clinic gets it: no id or version of ours, the patient re-pointed."""
    resource = copy.deepcopy(raw)
    resource.pop("id", None)
    tags = (resource.pop("meta", None) or {}).get("tag")
    if tags:
        resource["meta"] = {"tag": tags}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("reference") == own:
                value["reference"] = f"Patient/{clinic_patient}"
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(resource)
    return resource


def condition_of(raw: dict[str, Any]) -> str:
    """The If-None-Exist query that finds this entry at a clinic: its business identifier."""
    for ident in raw.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == shapes.IDENTIFIER_SYSTEM:
            return f"identifier={ident['system']}|{ident['value']}"
    raise ValueError("an entry without its identifier cannot be sent safely")


def send(
    factory: sessionmaker[Session], writeback_id: int, settings: SmartSettings | None = None
) -> State | None:
    """Send one queued write-back; returns its state after (None: someone else has it)."""
    settings = resolve(settings)
    now = utcnow()
    with transaction(factory) as session:
        claimed = LEASE.take(
            session,
            WriteBack.id == writeback_id,
            WriteBack.state.in_((State.QUEUED, State.FAILED, State.SENDING)),
            free=WriteBack.state.in_((State.QUEUED, State.FAILED)),
            now=now,
            state=State.SENDING,
            attempts=WriteBack.attempts + 1,
        )
        if not claimed:
            return None
        wb = session.get(WriteBack, writeback_id)
        assert wb is not None
        record = session.get(FhirRecord, wb.record_id)
        connection = session.get(EhrConnection, wb.connection_id)
        assert record is not None and connection is not None
        deleted = shapes.is_deleted(record.raw)
        own = session.get(EhrConnection, record.connection_id)
        assert own is not None
        resource = for_clinic(record.raw, f"Patient/{own.patient_id}", connection.patient_id)
        version, attempts = record.version_id, wb.attempts
        clinic, fhir_base = connection.source_name, connection.server.fhir_base
        connection_id = connection.id
    if deleted:  # deleted after it was queued: what the patient took back is never sent
        return _finish(
            factory, writeback_id, State.GAVE_UP, error="You deleted it, so it was not sent."
        )
    try:
        with settings.http_client() as http:
            client = FhirClient(
                fhir_base, TokenSource(factory, connection_id, settings), http, settings
            )
            server_id, _created = client.create(resource, if_none_exist=condition_of(record.raw))
    except SmartError as exc:
        state, error, retry = _failure(exc, clinic, attempts)
        log.warning(
            "write-back %s to connection %s: %s (%s)",
            writeback_id,
            connection_id,
            type(exc).__name__,
            getattr(exc, "status_code", None),
        )
        return _finish(factory, writeback_id, state, error=error, retry_at=retry)
    return _finish(factory, writeback_id, State.SENT, server_id=server_id, version=version)


def _failure(exc: SmartError, clinic: str, attempts: int) -> tuple[State, str, datetime | None]:
    """(state, words, when to try again) for a failed send."""
    if isinstance(exc, ConnectionUnavailable):
        ended = f"Your connection to {clinic} has ended: connect again, then retry."
        return State.FAILED, ended, None
    status = getattr(exc, "status_code", None)
    if isinstance(exc, EhrUnavailable) or (isinstance(exc, FhirRequestError) and status is None):
        if attempts >= MAX_ATTEMPTS:
            return State.GAVE_UP, f"{clinic} could not be reached after {attempts} tries.", None
        delay = RETRY_DELAYS[min(attempts - 1, len(RETRY_DELAYS) - 1)]
        return (
            State.FAILED,
            f"{clinic} could not be reached. The portal will try again.",
            utcnow() + timedelta(seconds=delay),
        )
    if status == 403:
        return State.GAVE_UP, f"{clinic} refused it: this app may no longer add that there.", None
    if status == 412:
        return State.GAVE_UP, f"{clinic} holds more than one entry that looks like this one.", None
    return State.GAVE_UP, f"{clinic} could not accept it.", None


def _finish(
    factory: sessionmaker[Session],
    writeback_id: int,
    state: State,
    *,
    error: str | None = None,
    retry_at: datetime | None = None,
    server_id: str | None = None,
    version: str | None = None,
) -> State:
    with transaction(factory) as session:
        wb = session.get(WriteBack, writeback_id)
        if wb is None:  # the entry or the connection was deleted meanwhile
            return state
        wb.state = state
        wb.error = error
        wb.next_attempt_at = retry_at
        wb.updated_at = utcnow()
        if state is State.SENT:
            wb.server_id = (server_id or "")[:64] or None
            wb.version_sent = version
    return state


def due(session: Session, now: datetime | None = None) -> list[int]:
    """Write-backs to (re)try now: queued, failed with their time come, or cut off."""
    now = now or utcnow()
    return list(
        session.scalars(
            sa.select(WriteBack.id)
            .where(
                sa.or_(
                    WriteBack.state == State.QUEUED,
                    sa.and_(WriteBack.state == State.FAILED, WriteBack.next_attempt_at <= now),
                    sa.and_(WriteBack.state == State.SENDING, LEASE.lapsed(now)),
                )
            )
            .order_by(WriteBack.id)
        )
    )


def run_due(
    factory: sessionmaker[Session], settings: SmartSettings | None = None
) -> dict[int, State | None]:
    """Try every due write-back once (the `portal sync` sweep)."""
    with factory() as session:
        ids = due(session)
    return {i: send(factory, i, settings) for i in ids}


@job("writeback.send", retries=2, delay=30, backoff=2)
def send_queued(writeback_id: int) -> None:
    """The job of an entry the patient sent to a clinic (enqueued after its commit). The
    clinic's refusals and outages are the write-back's own state, retried by `due` with its
    own backoff; the queue retries only an error that escaped. Delivered twice, it sends
    once: `send` claims the write-back first."""
    from portal.smart.settings import EXTENSION

    app = current_app._get_current_object()  # type: ignore[attr-defined]  # the proxied app
    send(db.sessionmaker(app), writeback_id, app.extensions.get(EXTENSION))
