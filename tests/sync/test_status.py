"""What the patient reads about each clinic's part of the record (portal.sync.status)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.extensions import db
from portal.models import SyncRun
from portal.sync.status import connection_status, of_connections
from tests.phr import factories as f
from tests.plain import assert_plain


def report(rid: str) -> dict[str, object]:
    """A lab report: the sync searches it for lab results and for documents."""
    return {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "status": "final",
        "category": [{"coding": [{"code": "LAB"}]}],
        "code": {"text": "Blood count"},
        "effectiveDateTime": "2024-03-01",
    }


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with app.app_context():
        yield db.session


def test_sync_status_in_plain_words(session: Session) -> None:
    now = datetime(2025, 1, 10, 12, tzinfo=UTC)
    account = f.make_account(session)
    fine = f.make_connection(session, account, last_synced_at=now - timedelta(hours=2))
    failing = f.make_connection(
        session, account, "Lakeside Family Clinic", last_synced_at=now - timedelta(days=3)
    )
    f.make_connection(session, account, "Hillside Clinic", status="reconnect_needed")
    f.make_connection(session, account, "Oldtown Clinic", status="disconnected", last_synced_at=now)
    session.add_all(
        [
            SyncRun(connection_id=fine.id, status="failed"),
            SyncRun(connection_id=fine.id, status="complete"),
            SyncRun(connection_id=failing.id, status="incomplete"),
        ]
    )
    session.flush()
    statuses = {s.ehr_name: s for s in of_connections(session, account.connections, now)}
    assert statuses["Riverside General Hospital"].problem is None
    assert statuses["Riverside General Hospital"].age == "2 hours ago"
    assert statuses["Riverside General Hospital"].last_synced == "10 Jan 2025, 10:00"
    assert "did not finish" in (statuses["Lakeside Family Clinic"].problem or "")
    assert "3 days ago" in (statuses["Lakeside Family Clinic"].problem or "")
    assert statuses["Hillside Clinic"].last_synced == "never"
    assert "connect again" in (statuses["Hillside Clinic"].problem or "")
    assert "Nothing has been copied yet" in (statuses["Hillside Clinic"].problem or "")
    assert "You disconnected Oldtown Clinic" in (statuses["Oldtown Clinic"].problem or "")


def test_progress_lists_only_sections_with_news(session: Session) -> None:
    account = f.make_account(session)
    connection = f.make_connection(session, account)
    session.add(
        SyncRun(
            connection_id=connection.id,
            status="running",
            started_at=utcnow() - timedelta(minutes=1),
            progress={
                "labs": {"fetched": 120, "done": False},
                "immunizations": {"fetched": 0, "done": False},
                "allergies": {"fetched": 0, "done": True},
                "visits": {"fetched": 0, "done": True, "error": "the EHR refused this search"},
                "observations": {"fetched": 2, "done": True},
            },
        )
    )
    f.add_resources(session, connection, [report("r1"), report("r2")])
    session.flush()
    status = connection_status(session, connection)
    assert status.syncing and len(status.sections) == 5
    assert [s.name for s in status.progress] == ["lab results", "other observations", "visits"]
    # What is stored, each record once (a report is in two sections' progress).
    assert status.headline == "Fetching your records… 2 items so far."


def test_a_run_read_after_its_end_outranks_a_connection_read_before_it(session: Session) -> None:
    """The status reads the connection, then the runs: a sync that ended in between (its last
    commit sets both) still reads as up to date, never as "not fetched yet"."""
    now = datetime(2025, 1, 10, 12, tzinfo=UTC)
    account = f.make_account(session)
    fresh = f.make_connection(session, account)  # read before the first sync's end
    again = f.make_connection(
        session, account, "Lakeside Family Clinic", last_synced_at=now - timedelta(days=2)
    )
    session.add_all(
        [
            SyncRun(connection_id=fresh.id, status="complete", finished_at=now),
            SyncRun(connection_id=again.id, status="complete", finished_at=now),
        ]
    )
    session.flush()
    for status in of_connections(session, account.connections, now + timedelta(minutes=1)):
        assert status.headline == "Up to date."
        assert status.last_synced == "10 Jan 2025, 12:00" and status.age == "1 minute ago"


@pytest.mark.parametrize(
    "stored",
    [
        "Some of your record could not be fetched (visits): the EHR answered 503.",
        "Some of your record could not be fetched (lab results): unexpected error (KeyError).",
        "Nothing could be fetched: Observation search did not answer a Bundle.",
    ],
)
def test_a_run_error_in_technical_words_reads_plainly(session: Session, stored: str) -> None:
    """Runs that ended before the sync wrote plain words: no status, exception or FHIR name."""
    account = f.make_account(session)
    connection = f.make_connection(session, account)
    progress = {"visits": {"fetched": 3, "done": True, "error": stored}}
    session.add(
        SyncRun(connection_id=connection.id, status="incomplete", error=stored, progress=progress)
    )
    session.flush()
    status = connection_status(session, connection)
    general = "Some of your record could not be fetched."
    assert status.headline == f"The last update did not finish: {general}"
    assert_plain(status.headline)
    (visits,) = status.progress
    assert visits.error == general


def test_a_run_error_in_plain_words_is_shown_as_it_is(session: Session) -> None:
    account = f.make_account(session)
    connection = f.make_connection(session, account)
    words = (
        "Riverside General Hospital sent more lab results than the portal reads in one go; "
        "what arrived is kept."
    )
    session.add(SyncRun(connection_id=connection.id, status="incomplete", error=words))
    session.flush()
    assert (
        connection_status(session, connection).headline
        == f"The last update did not finish: {words}"
    )
