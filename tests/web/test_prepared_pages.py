"""Records pages prepared once per version of the record (portal.phr.snapshots)."""

from __future__ import annotations

import html
import re
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, url_for
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import EhrConnection, PageSnapshot, SyncRun
from portal.phr import facts, snapshots
from portal.phr.access import open_record
from portal.phr.records import Records
from portal.web.records import LANDING, prepare_pages, prepare_record
from tests.phr import factories as f
from tests.phr.two_clinics import brant_at_both
from tests.sessions import begin

HTMX = {"HX-Request": "true"}


def sign_in(client: FlaskClient, account_id: int) -> None:
    with client.session_transaction() as s:
        begin(s, account_id)


def load(app: Flask, bundle: str, **kwargs: Any) -> tuple[int, int]:
    with app.app_context():
        account, connection, _ = f.patient_with(db.session, bundle, **kwargs)
        db.session.commit()
        return account.id, connection.id


def refuse(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    """Make a page's domain builder fail: a page still served was served prepared."""

    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError(f"{target} ran")

    monkeypatch.setattr(target, fail)


def snapshot_count(app: Flask, account_id: int) -> int:
    with app.app_context():
        query = sa.select(sa.func.count()).where(PageSnapshot.account_id == account_id)
        return int(db.session.scalar(query) or 0)


def test_a_page_is_built_once_per_version_of_the_record(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    account_id, _ = load(app, "vito_feeney")
    sign_in(client, account_id)
    first = client.get("/records/labs")
    assert first.status_code == 200 and "results from" in first.text
    refuse(monkeypatch, "portal.phr.labs.overview")
    again = client.get("/records/labs")
    assert again.status_code == 200
    assert again.text.split('<main id="main">')[1] == first.text.split('<main id="main">')[1]
    # Another page parameter is another page: it is built, so here it fails.
    with pytest.raises(AssertionError, match="overview ran"):
        client.get("/records/labs?page=2")


def test_new_records_show_at_once(app: Flask, client: FlaskClient) -> None:
    account_id, connection_id = load(app, "vito_feeney")
    sign_in(client, account_id)
    assert "Hiccups of the heart" not in client.get("/records/problems").text
    with app.app_context():
        connection = db.session.get(EhrConnection, connection_id)
        assert connection is not None
        condition = {
            "resourceType": "Condition",
            "id": "made-up-1",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"text": "Hiccups of the heart"},
            "subject": {"reference": f"Patient/{connection.patient_id}"},
            "onsetDateTime": "2024-05-01",
        }
        f.add_resources(db.session, connection, [condition])
        db.session.commit()
    assert "Hiccups of the heart" in client.get("/records/problems").text
    # Only the current version's pages are kept.
    with app.app_context():
        versions = db.session.scalars(
            sa.select(PageSnapshot.version).where(PageSnapshot.account_id == account_id)
        ).all()
        assert len(set(versions)) == 1


def test_people_never_get_each_others_pages(app: Flask, client: FlaskClient) -> None:
    vito, _ = load(app, "vito_feeney", name="Vito")
    other, _ = load(app, "arron_schamberger", name="Arron")
    sign_in(client, vito)
    assert "Vito Feeney" in client.get("/records/").text
    sign_in(client, other)
    page = client.get("/records/").text
    assert "Vito Feeney" not in page and "Schamberger" in page
    assert snapshot_count(app, vito) == 1 and snapshot_count(app, other) == 1


def test_fragments_and_full_pages_are_kept_apart(app: Flask, client: FlaskClient) -> None:
    account_id, _ = load(app, "vito_feeney")
    sign_in(client, account_id)
    fragment = client.get("/records/problems?show=past", headers=HTMX).text
    assert "<html" not in fragment and 'id="problems-list"' in fragment
    full = client.get("/records/problems?show=past").text
    assert full.startswith("<!doctype html>") and 'id="problems-list"' in full
    assert "<html" not in client.get("/records/problems?show=past", headers=HTMX).text


def test_a_connection_change_rebuilds_the_pages(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    account_id, connection_id = load(app, "vito_feeney")
    sign_in(client, account_id)
    assert "Metformin" in client.get("/records/medications").text
    refuse(monkeypatch, "portal.phr.lists.medications")
    assert client.get("/records/medications").status_code == 200  # prepared
    with app.app_context():
        db.session.execute(
            sa.update(EhrConnection)
            .where(EhrConnection.id == connection_id)
            .values(status="disconnected")
        )
        db.session.commit()
    with pytest.raises(AssertionError, match="medications ran"):
        client.get("/records/medications")


def test_the_key_holds_the_viewer_what_they_may_see_and_the_day(app: Flask) -> None:
    account_id, _ = load(app, "arron_schamberger")
    with app.app_context():
        view = open_record(db.session, account_id)
        key = snapshots.key(view, "build", date(2026, 1, 1), ("page",))
        assert key == snapshots.key(view, "build", date(2026, 1, 1), ("page",))
        others = [
            snapshots.key(view, "build", date(2026, 1, 2), ("page",)),
            snapshots.key(view, "other build", date(2026, 1, 1), ("page",)),
            snapshots.key(view, "build", date(2026, 1, 1), ("page", 2)),
        ]
        limited = type(view)(view.owner, view.viewer_id, frozenset({"labs"}), view.connections)
        others.append(snapshots.key(limited, "build", date(2026, 1, 1), ("page",)))
        someone = type(view)(view.owner, view.viewer_id + 1, None, view.connections)
        others.append(snapshots.key(someone, "build", date(2026, 1, 1), ("page",)))
        assert key not in others and len(set(others)) == len(others)


def test_pages_are_prepared_when_a_sync_ends(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    account_id, connection_id = load(app, "vito_feeney", name="Vito")
    with app.app_context():
        run = SyncRun(connection_id=connection_id, status="complete")
        db.session.add(run)
        db.session.commit()
        run_id = run.id
    assert prepare_pages(app, run_id) == len(LANDING)
    assert snapshot_count(app, account_id) == len(LANDING)
    for builder in ("portal.phr.summary.summary", "portal.phr.vitals.vitals"):
        refuse(monkeypatch, builder)
    sign_in(client, account_id)
    summary = client.get("/records/")
    assert summary.status_code == 200 and "Vito Feeney" in summary.text
    assert "Latest vital signs" in summary.text and "updated never" not in summary.text.lower()
    assert client.get("/records/vitals").status_code == 200
    assert prepare_pages(app, run_id + 1000) == 0  # no such run: nothing to prepare


def test_after_a_sync_no_records_page_folds_or_reads_a_whole_section(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync's end folds every section (portal.phr.facts); after it, any records page (each
    landing page and every records page they link to: other pages, filters, a test's or a
    visit's own page) is a query of the stored facts and a render, even when it was not
    prepared itself: it stores no folded list and reads no section whole."""
    with app.app_context():
        account = brant_at_both(db.session).account  # two clinics: facts are folded
        # A third with imaging studies, reports, bills: every section has something.
        f.add_bundle(
            db.session, f.make_connection(db.session, account, "Hill Clinic"), "fletcher_hyatt"
        )
        db.session.commit()
        account_id = account.id
    prepare_record(app, account_id)  # as a sync's end does
    with app.app_context():
        db.session.execute(sa.delete(PageSnapshot))  # each page built, not served prepared
        db.session.commit()

    def no_store(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a page folded a section: its list was not stored by the sync")

    monkeypatch.setattr(facts, "_store", no_store)
    real_rows = Records.rows

    def rows(self: Records, categories: Any, **options: Any) -> Any:
        bounded = options.get("where") or options.get("limit") is not None
        assert bounded, f"a page read every row of {categories}"
        return real_rows(self, categories, **options)

    monkeypatch.setattr(Records, "rows", rows)
    sign_in(client, account_id)
    with app.test_request_context():
        landing = [url_for(endpoint) for endpoint in LANDING]
    seen = set(landing)
    linked: list[str] = []
    for path in landing:
        page = client.get(path)
        assert page.status_code == 200, path
        for href in re.findall(r'href="(/records/[^"#]*)', page.text):
            href = html.unescape(href)
            if href not in seen:
                seen.add(href)
                linked.append(href)
    assert "/records/visits?page=2" in linked and "/records/problems?show=all" in linked
    assert "/records/labs/panels" in linked
    assert "imaging studies, newest first" in client.get("/records/imaging").text
    assert any("/labs/test/" in h for h in linked) and any("/vitals/" in h for h in linked)
    for path in linked:
        assert client.get(path).status_code == 200, path
