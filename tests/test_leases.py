"""The one lease helper (portal.leases) that the sync runs, the token refresh and the
write-backs take their work with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.leases import Lease
from portal.models import EhrConnection, SyncRun, SyncStatus
from tests.phr import factories as f

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
RUNS = Lease(SyncRun.heartbeat_at, 30, SyncRun.lease_owner)
REFRESH = Lease(EhrConnection.refresh_lease_at, 20)


@pytest.fixture
def session(app: Flask) -> Session:
    with app.app_context():
        yield db.session
        db.session.rollback()


def a_run(session: Session) -> int:
    connection = f.make_connection(session, f.make_account(session))
    run = SyncRun(connection_id=connection.id, status=SyncStatus.QUEUED, progress={})
    session.add(run)
    session.flush()
    return run.id


def row(session: Session, run_id: int) -> SyncRun:
    found = session.execute(
        sa.select(SyncRun).where(SyncRun.id == run_id).execution_options(populate_existing=True)
    ).scalar_one()
    return found


def test_one_taker_holds_a_lease_until_it_lapses(session: Session) -> None:
    run_id = a_run(session)
    this = SyncRun.id == run_id
    assert RUNS.take(session, this, owner="a", now=T0, status=SyncStatus.RUNNING)
    assert (row(session, run_id).lease_owner, row(session, run_id).status) == ("a", "running")
    # Held: nobody else takes it, however often they try, until 30 s after the last stamp.
    assert not RUNS.take(session, this, owner="b", now=T0 + timedelta(seconds=29))
    assert RUNS.take(session, this, owner="b", now=T0 + timedelta(seconds=31))
    assert row(session, run_id).lease_owner == "b"


def test_only_the_holder_renews_or_ends_it(session: Session) -> None:
    run_id = a_run(session)
    this = SyncRun.id == run_id
    assert RUNS.take(session, this, owner="a", now=T0)
    assert not RUNS.renew(session, this, owner="b", progress={"x": 1})
    assert RUNS.renew(session, this, owner="a", progress={"x": 2})
    renewed = row(session, run_id)
    assert renewed.progress == {"x": 2} and renewed.heartbeat_at > T0
    # Taken over meanwhile (the first holder paused past its lease): it can no longer end it.
    assert RUNS.take(session, this, owner="b", now=datetime.now(UTC) + timedelta(minutes=1))
    assert not RUNS.end(session, this, owner="a", status=SyncStatus.COMPLETE)
    assert RUNS.end(session, this, owner="b", keep_stamp=True, status=SyncStatus.COMPLETE)
    ended = row(session, run_id)
    assert ended.status == "complete" and ended.heartbeat_at is not None


def test_a_free_state_is_claimable_whatever_its_stamp(session: Session) -> None:
    run_id = a_run(session)
    this = SyncRun.id == run_id
    session.execute(sa.update(SyncRun).values(heartbeat_at=T0))
    queued = SyncRun.status == SyncStatus.QUEUED
    assert RUNS.take(session, this, free=queued, owner="a", now=T0, status=SyncStatus.RUNNING)
    assert not RUNS.take(session, this, free=queued, owner="b", now=T0)


def test_a_lease_without_an_owner_is_ended_by_whoever_holds_it(session: Session) -> None:
    connection = f.make_connection(session, f.make_account(session))
    this = EhrConnection.id == connection.id
    assert REFRESH.take(session, this)
    assert not REFRESH.take(session, this)
    assert REFRESH.end(session, this)
    assert REFRESH.take(session, this)
    with pytest.raises(TypeError):
        REFRESH.renew(session, this, owner="a")


def test_sweeps_find_the_rows_whose_lease_lapsed(session: Session) -> None:
    held, dead, never = a_run(session), a_run(session), a_run(session)
    session.execute(sa.update(SyncRun).where(SyncRun.id == held).values(heartbeat_at=T0))
    session.execute(
        sa.update(SyncRun).where(SyncRun.id == dead).values(heartbeat_at=T0 - timedelta(hours=1))
    )
    lapsed = session.scalars(
        sa.select(SyncRun.id).where(RUNS.lapsed(T0 + timedelta(seconds=10))).order_by(SyncRun.id)
    ).all()
    assert lapsed == [dead, never]
