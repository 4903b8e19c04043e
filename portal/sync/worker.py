"""Where syncs run: a daemon thread started by the web layer, and a sweep for the CLI.

Several gunicorn workers may run these at once; claims in the database decide who runs what.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from portal.db import utcnow
from portal.extensions import db
from portal.models import SyncRun
from portal.smart.settings import EXTENSION, SmartSettings
from portal.smart.settings import init_app as init_smart
from portal.sync.engine import SyncSettings, new_owner, run

log = logging.getLogger(__name__)

VISIBLE_TIMEOUT = 10.0  # how long a thread waits for the request that queued its run to commit


def sync_settings(app: Flask) -> SyncSettings:
    """Sync limits from the app's config (SYNC_MAX_CONNECTIONS, SYNC_PAGE_SIZE, ...)."""
    smart: SmartSettings | None = app.extensions.get(EXTENSION)
    if smart is None:
        smart = init_smart(app)
    config = app.config
    return SyncSettings(
        smart=smart,
        max_connections=int(config.get("SYNC_MAX_CONNECTIONS", 6)),
        page_size=int(config.get("SYNC_PAGE_SIZE", 200)),
        lease_seconds=int(config.get("SYNC_LEASE_SECONDS", 60)),
        fetch_references=bool(config.get("SYNC_FETCH_REFERENCES", True)),
        max_pages_per_search=int(config["SYNC_MAX_PAGES_PER_SEARCH"]),
        max_records_per_run=int(config["SYNC_MAX_RECORDS_PER_RUN"]),
        max_page_bytes=int(config["SYNC_MAX_PAGE_BYTES"]),
        run_deadline_seconds=float(config["SYNC_RUN_DEADLINE_SECONDS"]),
    )


def start_in_background(
    app: Flask, run_id: int, after: Callable[[int], object] | None = None
) -> threading.Thread:
    """Run a queued sync in a daemon thread of this process (call after `enqueue`).

    `after(run_id)` runs in the same thread once the sync has ended, whatever its outcome
    (the web layer prepares the records pages there).
    """
    factory = db.sessionmaker(app)
    settings = sync_settings(app)
    thread = threading.Thread(
        target=_background,
        args=(factory, run_id, settings, after),
        name=f"sync-{run_id}",
        daemon=True,
    )
    thread.start()
    return thread


def _background(
    factory: sessionmaker[Session],
    run_id: int,
    settings: SyncSettings,
    after: Callable[[int], object] | None,
) -> None:
    try:
        if not _wait_until_visible(factory, run_id):
            log.warning("sync run %s never became visible; the sweep will pick it up", run_id)
            return
        status = run(factory, run_id, new_owner(), settings=settings)
    except Exception:
        log.exception("background sync run %s failed", run_id)
        return
    if after is not None and status is not None:
        try:
            after(run_id)
        except Exception:
            log.exception("after sync run %s", run_id)


def _wait_until_visible(factory: sessionmaker[Session], run_id: int) -> bool:
    """The request that queued the run may not have committed yet: wait for its row."""
    deadline = time.monotonic() + VISIBLE_TIMEOUT
    while True:
        with factory() as session:
            if session.get(SyncRun, run_id) is not None:
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def runnable_runs(
    session: Session, *, lease_seconds: int = 60, queued_for: float = 0.0
) -> list[int]:
    """Runs nobody is running: queued (for at least `queued_for` s) or with an expired lease."""
    now = utcnow()
    rows = session.scalars(
        sa.select(SyncRun.id)
        .where(
            sa.or_(
                sa.and_(
                    SyncRun.status == "queued",
                    SyncRun.created_at <= now - timedelta(seconds=queued_for),
                ),
                sa.and_(
                    SyncRun.status == "running",
                    sa.or_(
                        SyncRun.heartbeat_at.is_(None),
                        SyncRun.heartbeat_at < now - timedelta(seconds=lease_seconds),
                    ),
                ),
            )
        )
        .order_by(SyncRun.id)
    )
    return list(rows)


def run_pending(
    factory: sessionmaker[Session],
    settings: SyncSettings,
    *,
    queued_for: float = 30.0,
    limit: int | None = None,
) -> dict[int, str | None]:
    """Run every stale queued or abandoned run, one after another (the `portal sync` command).

    Returns run id -> final status (None: another worker claimed it first).
    """
    with factory() as session:
        ids = runnable_runs(session, lease_seconds=settings.lease_seconds, queued_for=queued_for)
    results: dict[int, str | None] = {}
    for run_id in ids[:limit] if limit else ids:
        results[run_id] = run(factory, run_id, new_owner(), settings=settings)
    return results
