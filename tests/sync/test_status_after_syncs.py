"""The status after real syncs that stopped part way, against the live sandbox: what is stored
is said (how much, when, what is missing), never "nothing yet" or "never"."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from portal.db import transaction
from portal.models import EhrConnection, EhrServer, FhirRecord, SyncRun
from portal.phr.access import open_record
from portal.phr.availability import Availability, section_state
from portal.phr.records import Records
from portal.smart.settings import SmartSettings
from portal.sync import engine
from portal.sync.engine import SyncSettings, enqueue, run
from portal.sync.status import ConnectionStatus, connection_status
from tests.live import Browser, LiveEhr, connected
from tests.plain import assert_plain


@pytest.fixture
def conn(factory, ehr: EhrServer, browser: Browser, smart: SmartSettings, live_ehr: LiveEhr) -> int:
    return connected(factory, ehr, browser, live_ehr, smart)


@pytest.fixture
def faults(live_ehr: LiveEhr):
    yield live_ehr
    live_ehr.clear_faults()


def sync_once(factory, conn: int, sync: SyncSettings) -> SyncRun:
    with transaction(factory) as session:
        run_id = enqueue(session, conn).id
    run(factory, run_id, "test-worker", settings=sync)
    with factory() as session:
        found = session.get(SyncRun, run_id)
        assert found is not None
        return found


def status_of(factory, conn: int) -> tuple[ConnectionStatus, int]:
    with factory() as session:
        connection = session.get(EhrConnection, conn)
        assert connection is not None
        stored = session.scalar(sa.select(sa.func.count()).where(FhirRecord.connection_id == conn))
        return connection_status(session, connection), int(stored or 0)


def assert_true_of_what_is_stored(status: ConnectionStatus, stored: int) -> None:
    assert stored > 0
    assert status.last_synced_at is None  # no update completed
    words = [status.headline, status.updated, status.problem or "", *status.parts]
    for said in words:
        assert "never" not in said and "Nothing has been" not in said, said
    assert status.stored == stored
    assert f"{stored:,} items were fetched" in status.updated  # how much, and when
    assert f"What you see here ({stored:,} items) was fetched" in (status.problem or "")
    assert_plain(" ".join(words))


def test_after_a_refused_looping_next_link(
    factory, conn: int, smart: SmartSettings, faults: LiveEhr
) -> None:
    faults.set_fault("looping_next", remaining=1)
    done = sync_once(factory, conn, SyncSettings(smart=smart, page_size=50))
    assert done.status == "incomplete"
    status, stored = status_of(factory, conn)
    assert_true_of_what_is_stored(status, stored)
    # One search was refused; it may feed two sections (reports: labs and documents).
    looped = [s for s, p in done.progress.items() if p["error"]]
    assert 1 <= len(looped) <= 2
    assert all(status.answers[s].state is Availability.FAILED for s in looped)
    assert status.missing and status.missing[0] in (status.problem or "")  # what is missing
    with factory() as session:
        records = Records(session, open_record(session, _owner(session, conn)))
        for section in looped:
            assert section_state(records, section).clinics[0].state is Availability.FAILED


def test_after_a_first_sync_stopped_part_way(factory, conn: int, smart: SmartSettings) -> None:
    """The record cap stops the first sync: what arrived is kept and said."""
    sync = SyncSettings(smart=smart, page_size=20, max_records_per_run=60, max_connections=1)
    done = sync_once(factory, conn, sync)
    assert done.status == "incomplete"
    status, stored = status_of(factory, conn)
    assert_true_of_what_is_stored(status, stored)
    assert status.missing  # the searches the stop cut short


def test_after_a_failed_store(factory, conn: int, smart: SmartSettings, monkeypatch) -> None:
    """The first write stores its records, a later one fails: the run fails, what the first
    stored is on screen and said."""
    real = engine.upsert_records
    writes: list[int] = []

    def upsert(session: Any, rows: list[dict[str, Any]]) -> int:
        if rows and writes:
            raise sa.exc.OperationalError("INSERT", {}, Exception("disk full"))
        writes.append(len(rows))
        return real(session, rows)

    monkeypatch.setattr(engine, "upsert_records", upsert)
    sync = SyncSettings(smart=smart, page_size=20, store_rows=20, max_connections=1)
    done = sync_once(factory, conn, sync)
    assert done.status == "failed" and done.error == engine.STORE_FAILED
    status, stored = status_of(factory, conn)
    assert_true_of_what_is_stored(status, stored)


def _owner(session: Any, connection_id: int) -> int:
    connection = session.get(EhrConnection, connection_id)
    assert connection is not None
    return int(connection.account_id)
