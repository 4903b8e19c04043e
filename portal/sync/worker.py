"""Where syncs run: the `sync.run` job (portal.jobs) a request enqueues after its commit, and
a sweep for the CLI.

Several workers may run these at once; claims in the database decide who runs what.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy.orm import Session, sessionmaker

from portal.db import utcnow
from portal.extensions import db
from portal.jobs import enqueue, job
from portal.models import SyncRun, SyncStatus
from portal.smart.settings import EXTENSION, SmartSettings
from portal.smart.settings import init_app as init_smart
from portal.sync.engine import SyncSettings, lease, new_owner, run

log = logging.getLogger(__name__)


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
        lease_seconds=int(config.get("SYNC_LEASE_SECONDS", 30)),
        fetch_references=bool(config.get("SYNC_FETCH_REFERENCES", True)),
        max_pages_per_search=int(config["SYNC_MAX_PAGES_PER_SEARCH"]),
        max_records_per_run=int(config["SYNC_MAX_RECORDS_PER_RUN"]),
        max_page_bytes=int(config["SYNC_MAX_PAGE_BYTES"]),
        run_deadline_seconds=float(config["SYNC_RUN_DEADLINE_SECONDS"]),
    )


# What follows a run that ended (the web layer prepares the records pages): (app, run id).
_AFTER_RUN: list[Callable[[Flask, int], object]] = []


def on_run_ended(hook: Callable[[Flask, int], object]) -> None:
    """Call `hook(app, run_id)` in the job once a run has ended, whatever its outcome."""
    if hook not in _AFTER_RUN:
        _AFTER_RUN.append(hook)


@job("sync.run", retries=3, delay=15, backoff=2)
def run_queued(run_id: int) -> None:
    """The job of a queued run. Running it twice changes nothing: the run is claimed (a
    second delivery finds it claimed, or ended, and returns); a worker that died leaves a
    lease that expires, and the run is taken over."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # the proxied app
    status = run(db.sessionmaker(app), run_id, new_owner(), settings=sync_settings(app))
    if status is None:
        return  # another worker has it
    for hook in _AFTER_RUN:
        try:
            hook(app, run_id)
        except Exception:  # the run stands; a page is built when first asked for
            log.exception("after sync run %s", run_id)


def runnable_runs(
    session: Session, *, lease_seconds: int = 30, queued_for: float = 0.0
) -> list[int]:
    """Runs nobody is running: queued (for at least `queued_for` s) or with an expired lease."""
    now = utcnow()
    rows = session.scalars(
        sa.select(SyncRun.id)
        .where(
            sa.or_(
                sa.and_(
                    SyncRun.status == SyncStatus.QUEUED,
                    SyncRun.created_at <= now - timedelta(seconds=queued_for),
                ),
                sa.and_(SyncRun.status == SyncStatus.RUNNING, lease(lease_seconds).lapsed(now)),
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


# The sweep: what no job is carrying any more (a worker died holding it, or a job was lost
# with a Redis restart) is put on the queue again. Every minute from each consumer's
# scheduler, and again 20 and 40 s later: a run whose worker died is taken over within a
# lease (30 s) and a sweep of its end. Claims decide who runs what, so sweeping twice (two
# workers' schedulers) runs nothing twice.
SWEEP_AGAIN = (20, 40)
QUEUED_FOR = 30.0  # seconds a queued run waits for its own job before the sweep sends another


@job("sync.sweep", every_minute=True)
def sweep_every_minute() -> None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # the proxied app
    sweep(app)
    for delay in SWEEP_AGAIN:
        enqueue(app, "sync.sweep-again", delay=delay)


@job("sync.sweep-again")
def sweep_again() -> None:
    sweep(current_app._get_current_object())  # type: ignore[attr-defined]  # the proxied app


def sweep(app: Flask) -> tuple[list[int], list[int]]:
    """Enqueue a job for every sync run nobody is running and every write-back due (new,
    due a retry, or cut off); returns (run ids, write-back ids)."""
    from portal.sync import writeback

    settings = sync_settings(app)
    with db.sessionmaker(app)() as session:
        runs = runnable_runs(session, lease_seconds=settings.lease_seconds, queued_for=QUEUED_FOR)
        sends = writeback.due(session)
    for run_id in runs:
        enqueue(app, "sync.run", run_id)
    for writeback_id in sends:
        enqueue(app, "writeback.send", writeback_id)
    if runs or sends:
        log.info("sweep: %d sync runs and %d entries put on the queue again", len(runs), len(sends))
    return runs, sends
