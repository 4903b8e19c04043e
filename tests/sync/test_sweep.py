"""Nothing stays stuck: the periodic sweep puts abandoned work on the queue again, and asking
for an update of a run whose worker died starts it again at once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from portal import jobs
from portal.db import transaction, utcnow
from portal.extensions import db
from portal.jobs import queue
from portal.models import EhrConnection, FhirRecord, SyncRun, SyncStatus, WriteBack
from portal.models import WriteBackState as Sending
from portal.sync import engine, worker
from tests.phr import factories as f


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    seen: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr(
        queue, "enqueue", lambda app, kind, *args, delay=None: seen.append((kind, args))
    )
    monkeypatch.setattr(worker, "enqueue", queue.enqueue)
    return seen


def a_connection(session: Session) -> EhrConnection:
    return f.make_connection(session, f.make_account(session))


def a_run(session: Session, connection: EhrConnection, status: SyncStatus, **columns: Any) -> int:
    run = SyncRun(connection_id=connection.id, status=status, progress={}, **columns)
    session.add(run)
    session.flush()
    return run.id


def ago(seconds: float) -> datetime:
    return utcnow() - timedelta(seconds=seconds)


def test_the_sweep_requeues_what_no_worker_is_carrying(
    app: Flask, enqueued: list[tuple[str, tuple[Any, ...]]]
) -> None:
    with app.app_context(), transaction(db.sessionmaker(app)) as session:
        c = [a_connection(session) for _ in range(5)]
        dead = a_run(session, c[0], SyncStatus.RUNNING, heartbeat_at=ago(45), lease_owner="x")
        alive = a_run(session, c[1], SyncStatus.RUNNING, heartbeat_at=ago(2), lease_owner="y")
        lost = a_run(session, c[2], SyncStatus.QUEUED, created_at=ago(60))
        fresh = a_run(session, c[3], SyncStatus.QUEUED, created_at=ago(1))
        ended = a_run(session, c[4], SyncStatus.COMPLETE, heartbeat_at=ago(600))
        f.add_resources(session, c[0], [{"resourceType": "Observation", "id": "o"}])
        record_id = session.scalar(sa.select(FhirRecord.id))
        assert record_id is not None
        cut_off = WriteBack(
            record_id=record_id, connection_id=c[1].id, state=Sending.SENDING, updated_at=ago(600)
        )
        sent = WriteBack(record_id=record_id, connection_id=c[2].id, state=Sending.SENT)
        session.add_all([cut_off, sent])
        session.flush()
        cut_off_id = cut_off.id
    runs, sends = worker.sweep(app)
    assert runs == [dead, lost] and alive not in runs and fresh not in runs and ended not in runs
    assert sends == [cut_off_id]
    assert enqueued == [
        ("sync.run", (dead,)),
        ("sync.run", (lost,)),
        ("writeback.send", (cut_off_id,)),
    ]


def test_the_sweep_runs_every_minute_and_looks_again_twice_within_it(
    app: Flask, enqueued: list[tuple[str, tuple[Any, ...]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    huey = jobs.huey_of(app)
    due = [t.name for t in huey.read_periodic(datetime(2026, 12, 4, 12, 0, 0))]
    assert "sync.sweep" in due and jobs.periodic_kinds() == ["sync.sweep"]
    delays: list[float | None] = []
    monkeypatch.setattr(queue, "enqueue", lambda app, kind, *args, delay=None: delays.append(delay))
    monkeypatch.setattr(worker, "enqueue", queue.enqueue)
    jobs.run_now(app, "sync.sweep")
    assert delays == [20, 40]  # nothing abandoned; the two looks later in the minute
    assert max(worker.SWEEP_AGAIN) + 20 <= 60


def test_update_now_on_a_run_whose_worker_died_starts_it_again_at_once(app: Flask) -> None:
    factory = db.sessionmaker(app)
    with app.app_context(), transaction(factory) as session:
        connection = a_connection(session)
        dead = a_run(session, connection, SyncStatus.RUNNING, heartbeat_at=ago(12), lease_owner="x")
    with app.app_context(), transaction(factory) as session:
        again = engine.enqueue(session, connection.id)
        assert again.id == dead and again.status is SyncStatus.QUEUED
    # Claimed at once, not after the 30 s lease; the dead worker can no longer beat or end it.
    with app.app_context(), transaction(factory) as session:
        assert engine.claim(session, dead, "new-worker", lease_seconds=30)
        assert not engine.lease(30).renew(session, SyncRun.id == dead, owner="x")


def test_update_now_leaves_a_run_whose_worker_is_beating(app: Flask) -> None:
    factory = db.sessionmaker(app)
    with app.app_context(), transaction(factory) as session:
        connection = a_connection(session)
        alive = a_run(session, connection, SyncStatus.RUNNING, heartbeat_at=ago(2), lease_owner="x")
    with app.app_context(), transaction(factory) as session:
        same = engine.enqueue(session, connection.id)
        assert same.id == alive and same.status is SyncStatus.RUNNING and same.lease_owner == "x"
    with app.app_context(), transaction(factory) as session:
        assert not engine.claim(session, alive, "new-worker", lease_seconds=30)
