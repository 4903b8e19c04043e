"""Running one sync: claim it, fetch every planned search concurrently, store page by page.

Threads: a bounded pool fetches (at most SYNC_MAX_CONNECTIONS requests in flight to the
EHR) and hands each page to the run's checking thread (see checking.py) without waiting;
there it is validated strictly and made into rows. References it finds are fetched as soon
as it is checked. One writer stores the checked pages in bulk, several pages per transaction, with
the run's progress and heartbeat in the same transaction: records appear as they arrive,
the lease stays alive, and the writer takes little of the fetching threads' interpreter
time. The run ends "complete" only if every planned search finished.

What an EHR sends is bounded: pages per search, records per run, bytes per page (read as a
stream), a deadline per run. Reaching a limit ends that search (or the run) as incomplete
in plain words (portal.sync.reasons), keeping what arrived.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from portal.db import transaction, utcnow
from portal.leases import Lease
from portal.models import EhrConnection, FhirRecord, SyncRun, SyncStatus
from portal.smart.errors import (
    ConnectionUnavailable,
    EhrUnavailable,
    FhirRequestError,
    NotConnected,
    ReconnectNeeded,
    SmartError,
)
from portal.smart.fhir import MAX_JSON_BYTES, FhirClient, OutOfTime
from portal.smart.settings import SmartSettings, resolve
from portal.smart.tokens import TokenSource
from portal.sync import reasons
from portal.sync.checking import Checker
from portal.sync.plan import (
    REFERENCED_TYPES,
    Search,
    plan,
    referenced_types,
    remainder,
    sections_for,
)
from portal.sync.store import Checked, prepare_page, quarantine, upsert_records

log = logging.getLogger(__name__)

ACTIVE = (SyncStatus.QUEUED, SyncStatus.RUNNING)
STORE_FAILED = (
    "The portal could not store your records; nothing is lost at your clinic. Try again later."
)
CRASHED = "The update stopped on a problem in the portal itself. Try again later."
# A running run whose worker has not beaten this long (its heartbeat is every second) is
# dead to someone asking for an update: it starts again at once.
DEAD_AFTER = 10.0
REFERENCE_BATCH = 50  # ids per `_id` search of referenced resources
MAX_REFERENCE_READS = 200  # when only read (not search) is granted


@dataclass
class SyncSettings:
    """Limits of a sync; `smart` carries keys, HTTP timeouts, retries and the sleep seam."""

    smart: SmartSettings
    max_connections: int = 6
    page_size: int = 200
    lease_seconds: int = 30  # a run whose worker died is taken over after this (a sweep)
    heartbeat_seconds: float = 1.0
    # Records and progress are written at most this often (and when `store_rows` records
    # wait, when a section completes though not twice within `section_seconds`, and at the
    # end): a few larger transactions rather than one per page, and little left for the end.
    store_seconds: float = 0.25
    section_seconds: float = 0.05
    store_rows: int = 200
    fetch_references: bool = True
    # What one run reads at most: more ends that search (pages, bytes) or the run (records,
    # time) as incomplete, keeping what arrived.
    max_pages_per_search: int = 1000
    max_records_per_run: int = 200_000
    max_page_bytes: int = MAX_JSON_BYTES
    run_deadline_seconds: float = 900.0
    clock: Callable[[], float] = time.monotonic  # of the deadline (tests: one the pages move)


def new_owner() -> str:
    """A lease owner name unique to this worker thread (host, process, random)."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(6)}"


# --- queueing and claiming ----------------------------------------------------------------------


def enqueue(session: Session, connection_id: int) -> SyncRun:
    """Queue a sync of the connection, or return the one already queued or running."""
    # Lock the connection row (PostgreSQL) or the database (SQLite) so two requests cannot
    # both find no run and both queue one.
    locked = session.execute(
        sa.update(EhrConnection)
        .where(EhrConnection.id == connection_id)
        .values(id=EhrConnection.id)
        .execution_options(synchronize_session=False)
    )
    if locked.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult has rowcount
        raise NotConnected(f"connection {connection_id} does not exist")
    connection = session.get(EhrConnection, connection_id)
    assert connection is not None
    if connection.is_self:
        raise NotConnected(f"connection {connection_id} is the patient's own entries")
    if connection.status == "reconnect_needed":
        raise ReconnectNeeded(f"connection {connection_id} needs reconnecting")
    if connection.status != "active":
        raise NotConnected(f"connection {connection_id} is {connection.status}")
    existing = session.scalar(
        sa.select(SyncRun)
        .where(SyncRun.connection_id == connection_id, SyncRun.status.in_(ACTIVE))
        .order_by(SyncRun.id.desc())
        .limit(1)
    )
    if existing is not None:
        dead = lease(DEAD_AFTER)
        # Its worker died (no heartbeat for ten beats): asked again, start it again now
        # rather than after its lease. Were that worker only stalled, its next beat finds
        # the run taken and it stops.
        if existing.status is SyncStatus.RUNNING and dead.end(
            session,
            SyncRun.id == existing.id,
            SyncRun.status == SyncStatus.RUNNING,
            dead.lapsed(),
            status=SyncStatus.QUEUED,
            lease_owner=None,
        ):
            session.refresh(existing)
            log.info("sync run %s had stopped; queued again", existing.id)
        return existing
    last_complete = session.scalar(
        sa.select(SyncRun.started_at)
        .where(SyncRun.connection_id == connection_id, SyncRun.status == SyncStatus.COMPLETE)
        .order_by(SyncRun.started_at.desc())
        .limit(1)
    )
    run = SyncRun(
        connection_id=connection_id, status=SyncStatus.QUEUED, progress={}, since=last_complete
    )
    session.add(run)
    session.flush()
    log.info("sync run %s queued for connection %s", run.id, connection_id)
    return run


def latest_run(session: Session, connection_id: int) -> SyncRun | None:
    """The connection's most recent run (what a progress page polls)."""
    return session.scalar(
        sa.select(SyncRun)
        .where(SyncRun.connection_id == connection_id)
        .order_by(SyncRun.id.desc())
        .limit(1)
    )


def lease(seconds: float) -> Lease:
    """A run's lease: its worker's heartbeat (portal.leases)."""
    return Lease(SyncRun.heartbeat_at, seconds, SyncRun.lease_owner)


def claim(session: Session, run_id: int, owner: str, lease_seconds: int) -> bool:
    """Atomically take a queued run (or one whose worker died); True if we got it."""
    now = utcnow()
    return lease(lease_seconds).take(
        session,
        SyncRun.id == run_id,
        SyncRun.status.in_(ACTIVE),
        free=SyncRun.status == SyncStatus.QUEUED,
        owner=owner,
        now=now,
        status=SyncStatus.RUNNING,
        started_at=now,
        finished_at=None,
        error=None,
    )


def run(
    session_factory: sessionmaker[Session],
    run_id: int,
    owner: str,
    *,
    settings: SyncSettings | None = None,
) -> str | None:
    """Claim and execute a run; returns its final status, or None if another worker has it."""
    settings = settings or SyncSettings(smart=resolve(None))
    runner = _Runner(session_factory, run_id, owner, settings)
    # The claim and what the run needs to start commit together (one round trip fewer before
    # the first request); should loading fail, the run stays queued for the sweep.
    with transaction(session_factory) as session:
        if not claim(session, run_id, owner, settings.lease_seconds):
            log.info("sync run %s is not ours to run", run_id)
            return None
        runner.load(session)
    try:
        return runner.execute()
    except Exception:
        log.exception("sync run %s crashed", run_id)
        _finish(session_factory, run_id, owner, SyncStatus.FAILED, None, CRASHED)
        raise


# --- one run ------------------------------------------------------------------------------------


@dataclass
class _State:
    search: Search
    fetched: int = 0
    quarantined: int = 0
    done: bool = False
    error: str | None = None


@dataclass
class _Message:
    kind: str  # planned | page | done | failed | close
    key: str = ""
    search: Search | None = None
    page: _Page | None = None
    error: str | None = None


@dataclass
class _Page:
    """A fetched page on its way to the writer; its checking may still be running."""

    checked: Future[Checked]


class _Stopped(Exception):
    """The run was told to stop (lease lost, reconnect needed, writer failed)."""


class _LeaseLost(Exception):
    """Another worker took the run over."""


class _Runner:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        run_id: int,
        owner: str,
        settings: SyncSettings,
    ) -> None:
        self.sf = session_factory
        self.run_id = run_id
        self.owner = owner
        self.settings = settings
        self.states: dict[str, _State] = {}
        self.messages: queue.Queue[_Message] = queue.Queue()
        self.stop = threading.Event()
        self.stop_reason: str | None = None
        self.lease_lost = False
        self.writer_error: str | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self.unavailable: str | None = None  # why the connection cannot be synced
        # What the writer had not stored when it closed: stored with the run's end.
        self._leftover: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
        self._requested_refs: set[tuple[str, str]] = set()
        self._ref_batches = 0
        # Observations' completeness check: ids the category searches found, their total.
        self._observation_ids: set[str] = set()
        self._observation_total: int | None = None
        self._check_observations = False
        self._observation_searches = 0  # still running, of those the check waits for
        self._observation_failed = False
        self._records = 0  # fetched in this run, of the cap `max_records_per_run`
        self.deadline = 0.0  # on `settings.clock`, set when the run starts

    # -- orchestration ---------------------------------------------------------------------------

    def load(self, session: Session) -> None:
        """Read what the run needs (in the claim's transaction)."""
        sync_run = session.get(SyncRun, self.run_id)
        assert sync_run is not None
        conn = session.get(EhrConnection, sync_run.connection_id)
        if conn is None or conn.status != "active":
            self.unavailable = (
                ReconnectNeeded.public_message
                if conn is not None and conn.status == "reconnect_needed"
                else NotConnected.public_message
            )
            return
        self.connection_id = conn.id
        self.patient_id = conn.patient_id
        self.fhir_base = conn.server.fhir_base
        self.ehr_name = conn.server.name
        self.granted = conn.granted_scope
        self.since = sync_run.since
        self.known_refs = self._stored_refs(session, conn.id)
        self.tokens = TokenSource(self.sf, conn.id, self.settings.smart)
        self.tokens.prime(conn)

    def execute(self) -> str:
        if self.unavailable is not None:
            return self._final(SyncStatus.FAILED, self.unavailable)
        searches = plan(
            self.granted, self.patient_id, since=self.since, page_size=self.settings.page_size
        )
        self._check_observations = any(s.purpose == "total" for s in searches)
        if self._check_observations:
            self._observation_searches = sum(1 for s in searches if _counted(s))
        self.ref_modes = referenced_types(self.granted) if self.settings.fetch_references else {}
        log.info(
            "sync run %s: %d searches for connection %s",
            self.run_id,
            len(searches),
            self.connection_id,
        )

        smart = self.settings.smart
        self.deadline = self.settings.clock() + self.settings.run_deadline_seconds
        n = max(1, self.settings.max_connections)
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        writer = threading.Thread(
            target=self._writer, name=f"sync-{self.run_id}-writer", daemon=True
        )
        writer.start()
        self.checking = Checker(f"sync-{self.run_id}-checker")
        try:
            with smart.http_client(limits=limits, verify=_tls()) as http:
                self.client = FhirClient(
                    self.fhir_base,
                    self.tokens,
                    http,
                    smart,
                    max_bytes=self.settings.max_page_bytes,
                    deadline=self.deadline,
                    clock=self.settings.clock,
                )
                with ThreadPoolExecutor(n, thread_name_prefix=f"sync-{self.run_id}") as pool:
                    self.pool = pool
                    for search in searches:
                        self._plan(search)
                    with self._idle:
                        while self._pending:
                            self._idle.wait()
        finally:
            self.checking.close()
            self.messages.put(_Message("close"))
            writer.join()
        return self._conclude()

    def _plan(self, search: Search) -> None:
        """Register a search with the writer, then start it."""
        with self._lock:
            self._pending += 1
        self.messages.put(_Message("planned", search.key, search=search))
        future = self.pool.submit(self._fetch, search)
        future.add_done_callback(self._finished)

    def _finished(self, _future: Future[None] | None = None) -> None:
        """A search or a page is finished with; the run ends when nothing is pending."""
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def _halt(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()

    # -- fetching (pool threads) -----------------------------------------------------------------

    def _fetch(self, search: Search) -> None:
        try:
            self._go_on()
            if search.read_id is not None:
                try:
                    resource = self.client.read(search.resource_type, search.read_id)
                except FhirRequestError as exc:
                    if search.purpose == "reference" and exc.status_code in (404, 410):
                        resource = None  # a record cites something the EHR no longer has
                    else:
                        raise
                if resource is not None:
                    self._page(search, [(resource, "match")])
            elif search.purpose == "total":
                bundle = next(iter(self.client.search(search.resource_type, list(search.params))))
                total = bundle.get("total")
                self._observation_total = total if isinstance(total, int) else None
            else:
                pages = self.client.search(
                    search.resource_type,
                    list(search.params),
                    max_pages=self.settings.max_pages_per_search,
                )
                for bundle in pages:
                    self._page(search, self._new_resources(search, entries(bundle)))
                    self._go_on()
        except _Stopped:
            self._failed(search, self.stop_reason or reasons.stopped(self.ehr_name))
        except ConnectionUnavailable as exc:
            self._halt(exc.public_message)
            self._failed(search, exc.public_message)
        except OutOfTime:
            self._halt(reasons.out_of_time(self.ehr_name))
            self._failed(search, reasons.out_of_time(self.ehr_name))
        except EhrUnavailable as exc:
            # Unreachable or overloaded after every retry: stop asking it for the rest.
            log.warning("sync run %s: %s failed: %s", self.run_id, search.key, exc)
            self._halt(reasons.unavailable(exc, self.ehr_name))
            self._failed(search, reasons.for_error(exc, self.ehr_name, search.label))
        except SmartError as exc:
            log.warning("sync run %s: %s failed: %s", self.run_id, search.key, exc)
            self._failed(search, reasons.for_error(exc, self.ehr_name, search.label))
        except Exception:
            log.exception("sync run %s: %s crashed", self.run_id, search.key)
            self._failed(search, reasons.crashed(search.label))
        else:
            self.messages.put(_Message("done", search.key))
            if self._check_observations and _counted(search):
                self._observation_search_done()

    def _go_on(self) -> None:
        """Raise _Stopped when the run was told to stop, or its time is up."""
        if not self.stop.is_set() and self.settings.clock() >= self.deadline:
            self._halt(reasons.out_of_time(self.ehr_name))
        if self.stop.is_set():
            raise _Stopped

    def _new_resources(
        self, search: Search, resources: list[tuple[Any, str]]
    ) -> list[tuple[Any, str]]:
        """Note the Observations category searches find; the remainder keeps only the rest."""
        if search.purpose == "remainder":
            with self._lock:
                return [
                    (r, mode)
                    for r, mode in resources
                    if not isinstance(r, dict) or r.get("id") not in self._observation_ids
                ]
        if self._check_observations and _counted(search):
            ids = [r.get("id") for r, _ in resources if isinstance(r, dict)]
            with self._lock:
                self._observation_ids.update(i for i in ids if isinstance(i, str))
        return resources

    def _observation_search_done(self) -> None:
        """When every category search and the count are in, fetch what they missed."""
        with self._lock:
            self._observation_searches -= 1
            if self._observation_searches or self._observation_failed:
                return
            total, found = self._observation_total, len(self._observation_ids)
        if total is None or total > found:
            log.info(
                "sync run %s: fetching Observations outside the category searches", self.run_id
            )
            self._plan(
                remainder(self.patient_id, since=self.since, page_size=self.settings.page_size)
            )

    def _failed(self, search: Search, why: str) -> None:
        if self._check_observations and _counted(search):
            with self._lock:
                self._observation_failed = True  # the run is incomplete anyway
        self.messages.put(_Message("failed", search.key, error=why[:300]))

    def _page(self, search: Search, resources: list[tuple[Any, str]]) -> None:
        """Hand a page to checking (another thread) and the writer; fetch on at once."""
        ref_types = () if search.purpose == "reference" else tuple(self.ref_modes)
        args = (
            resources,
            search.resource_type,
            self.patient_id,
            ref_types,
            self.fhir_base,
            self.connection_id,
            utcnow(),
        )
        with self._lock:
            self._pending += 1  # until the writer has taken it and planned its references
            self._records += len(resources)
            enough = self._records >= self.settings.max_records_per_run
        if enough:  # what arrived is stored; nothing more is asked for
            self._halt(reasons.too_many_records(self.ehr_name))
        checked = self.checking.submit(len(resources), prepare_page, *args)
        if ref_types:
            checked.add_done_callback(self._checked_references)
        self.messages.put(_Message("page", search.key, page=_Page(checked)))

    def _checked_references(self, checked: Future[Checked]) -> None:
        """Fetch what a page refers to as soon as it is checked, not when it is stored."""
        try:
            if not checked.cancelled() and checked.exception() is None:
                self._fetch_references(checked.result().references)
        except Exception:  # the writer plans them too, or reports the failure
            log.exception("sync run %s: planning references failed", self.run_id)

    def _fetch_references(self, refs: set[tuple[str, str]]) -> None:
        """Start fetching referenced resources not stored or requested yet, in batches."""
        with self._lock:
            new = sorted(refs - self._requested_refs - self.known_refs)
            if not new:
                return
            self._requested_refs.update(new)
            self._pending += 1  # the run cannot end before they are planned
        try:
            self._plan_references(new)
        finally:
            self._finished()

    def _plan_references(self, new: list[tuple[str, str]]) -> None:
        by_type: dict[str, list[str]] = {}
        for rtype, rid in new:
            by_type.setdefault(rtype, []).append(rid)
        for rtype, ids in by_type.items():
            sections = sections_for(rtype, None)
            if self.ref_modes.get(rtype) == "search":
                for start in range(0, len(ids), REFERENCE_BATCH):
                    chunk = ids[start : start + REFERENCE_BATCH]
                    params = (("_id", ",".join(chunk)), ("_count", str(len(chunk))))
                    key = self._ref_key(rtype)
                    self._plan(Search(key, rtype, params, sections, purpose="reference"))
            else:
                for rid in ids[:MAX_REFERENCE_READS]:
                    key = self._ref_key(rtype)
                    self._plan(Search(key, rtype, (), sections, rid, purpose="reference"))

    def _ref_key(self, rtype: str) -> str:
        with self._lock:
            self._ref_batches += 1
            return f"ref:{rtype}:{self._ref_batches}"

    def _stored_refs(self, session: Session, connection_id: int) -> set[tuple[str, str]]:
        rows = session.execute(
            sa.select(FhirRecord.resource_type, FhirRecord.resource_id).where(
                FhirRecord.connection_id == connection_id,
                FhirRecord.resource_type.in_(REFERENCED_TYPES),
            )
        )
        return {(t, i) for t, i in rows}

    # -- storing (writer thread) -----------------------------------------------------------------

    def _writer(self) -> None:
        """Take pages and search ends in order and write them in few transactions: at most
        every `store_seconds`, but at once when `store_rows` records wait, soon when a section
        completes (`section_seconds` after the last write, once caught up with what is
        queued), and at the end; the heartbeat at least every `heartbeat_seconds`."""
        rows: list[dict[str, Any]] = []
        quarantined: list[dict[str, Any]] = []
        changed = ended = False  # since the last write: anything new; a search ended
        shown_done: set[str] = set()  # sections the last write showed complete
        now = time.monotonic
        last = now()
        while True:
            try:
                wait = self._due(last, changed, ended) - now()
                message = self.messages.get(timeout=max(0.0, wait))
            except queue.Empty:
                message = None
            closing = message is not None and message.kind == "close"
            if message is not None and not closing:
                changed = True
                ended = ended or message.kind in ("done", "failed")
                try:
                    self._apply(message, rows, quarantined)
                except Exception as exc:  # never let the writer die: fetchers wait on it
                    log.exception("sync run %s: checking a page failed", self.run_id)
                    self.writer_error = f"checking records failed ({type(exc).__name__})"
                    self._halt("The portal could not check the records")
            if self.lease_lost or self.writer_error:
                if closing:
                    return
                continue  # keep draining so fetchers never wait on us
            progress: dict[str, Any] | None = None
            if closing:
                self._leftover = (rows, quarantined)  # stored with the run's end, at once
                return
            elif len(rows) >= self.settings.store_rows:
                pass  # enough records wait: store them now, and leave less for the end
            elif now() < self._due(last, changed, ended):
                continue
            elif now() < self._due(last, changed, False):  # due only because a search ended
                if not self.messages.empty():
                    continue  # more is queued: write it together
                ended = False
                progress = self.progress()
                if _complete(progress) <= shown_done:
                    continue
            progress = progress or self.progress()
            try:
                self._store(rows, quarantined, progress)
            except _LeaseLost:
                self.lease_lost = True
                self._halt("Another worker took this update over")
            except Exception as exc:
                log.exception("sync run %s: storing failed", self.run_id)
                self.writer_error = f"storing records failed ({type(exc).__name__})"
                self._halt("The portal could not store the records")
            rows, quarantined = [], []
            changed = ended = False
            shown_done, last = _complete(progress), now()

    def _due(self, last: float, changed: bool, ended: bool) -> float:
        """When the writer next writes: soon when there is news, sooner when a search ended
        (a section may be complete), else for the heartbeat."""
        heartbeat = self.settings.heartbeat_seconds
        if not changed:
            return last + heartbeat
        due = last + min(self.settings.store_seconds, heartbeat)
        return min(due, last + self.settings.section_seconds) if ended else due

    def _apply(
        self, m: _Message, rows: list[dict[str, Any]], quarantined: list[dict[str, Any]]
    ) -> None:
        if m.kind == "planned" and m.search is not None:
            self.states[m.key] = _State(m.search)
        elif m.kind == "page" and m.page is not None:
            state = self.states[m.key]
            try:
                checked = m.page.checked.result()
                state.fetched += len(checked.rows)
                state.quarantined += len(checked.quarantined)
                rows.extend(checked.rows)
                quarantined.extend(checked.quarantined)
                if checked.references:
                    self._fetch_references(checked.references)
            finally:
                self._finished()
        elif m.kind == "done":
            self.states[m.key].done = True
        elif m.kind == "failed":
            state = self.states[m.key]
            state.done = True
            state.error = m.error

    def _store(
        self,
        rows: list[dict[str, Any]],
        quarantined: list[dict[str, Any]],
        progress: dict[str, Any],
    ) -> None:
        with transaction(self.sf) as session:
            _write_records(session, self.connection_id, self.run_id, rows, quarantined)
            beat = lease(self.settings.lease_seconds).renew(
                session,
                SyncRun.id == self.run_id,
                SyncRun.status == SyncStatus.RUNNING,
                owner=self.owner,
                progress=progress,
            )
            if not beat:
                raise _LeaseLost

    def progress(self) -> dict[str, Any]:
        """Per records section: {"fetched": n, "done": bool, "quarantined": n, "error": str}."""
        out: dict[str, dict[str, Any]] = {}
        for state in list(self.states.values()):
            for section in state.search.sections:
                p = out.setdefault(
                    section, {"fetched": 0, "done": True, "quarantined": 0, "error": None}
                )
                p["fetched"] += state.fetched
                p["quarantined"] += state.quarantined
                p["done"] = p["done"] and state.done
                if state.error and not p["error"]:
                    p["error"] = state.error
        return out

    # -- the end ---------------------------------------------------------------------------------

    def _conclude(self) -> str:
        if self.lease_lost:
            log.warning("sync run %s: lease lost; the other worker finishes it", self.run_id)
            return "lost"
        failed = [s for s in self.states.values() if s.error or not s.done]
        fetched = sum(s.fetched for s in self.states.values())
        if self.writer_error:
            status, error = SyncStatus.FAILED, STORE_FAILED
        elif not failed and not self.stop.is_set():
            status, error = SyncStatus.COMPLETE, None
        else:
            status = SyncStatus.INCOMPLETE if fetched else SyncStatus.FAILED
            error = self._explain(failed, fetched)
        status = self._final(status, error)
        log.info(
            "sync run %s %s: %d resources, %d of %d searches failed",
            self.run_id,
            status,
            fetched,
            len(failed),
            len(self.states),
        )
        return status

    def _explain(self, failed: list[_State], fetched: int) -> str:
        """Plain words on why the run did not complete (no record contents)."""
        if self.stop_reason in (ReconnectNeeded.public_message, NotConnected.public_message):
            return self.stop_reason or ""
        reason = (
            self.stop_reason
            or next((s.error for s in failed if s.error), None)
            or reasons.stopped(self.ehr_name)
        )
        labels = list(dict.fromkeys(s.search.label for s in failed))
        return reasons.run_error(reason, labels, fetched > 0)

    def _final(self, status: SyncStatus, error: str | None) -> SyncStatus:
        """End the run, storing what the writer had left in the same transaction; returns
        the status it ended with."""
        rows, quarantined = self._leftover
        try:
            _finish(
                self.sf,
                self.run_id,
                self.owner,
                status,
                self.progress(),
                error,
                records=(self.connection_id, rows, quarantined) if rows or quarantined else None,
            )
        except Exception:
            if not rows and not quarantined:
                raise
            log.exception("sync run %s: storing failed", self.run_id)
            status, error = SyncStatus.FAILED, STORE_FAILED
            _finish(self.sf, self.run_id, self.owner, status, self.progress(), error)
        return status


def _write_records(
    session: Session,
    connection_id: int,
    run_id: int,
    rows: list[dict[str, Any]],
    quarantined: list[dict[str, Any]],
) -> None:
    """Store checked records and quarantine entries; a new version of the record if any."""
    if upsert_records(session, rows):
        session.execute(
            sa.update(EhrConnection)
            .where(EhrConnection.id == connection_id)
            .values(data_version=EhrConnection.data_version + 1)
            .execution_options(synchronize_session=False)
        )
    quarantine(session, quarantined, run_id)


def _finish(
    session_factory: sessionmaker[Session],
    run_id: int,
    owner: str,
    status: SyncStatus,
    progress: dict[str, Any] | None,
    error: str | None,
    *,
    records: tuple[int, list[dict[str, Any]], list[dict[str, Any]]] | None = None,
) -> None:
    """Mark the run ended if it is still ours, with `records` (connection id, rows,
    quarantine entries) stored in the same transaction."""
    now = utcnow()
    values: dict[str, Any] = {
        "status": status,
        "finished_at": now,
        "heartbeat_at": now,  # its last sign of life: the status alone says it ended
        "error": error,
    }
    if progress is not None:
        values["progress"] = progress
    with transaction(session_factory) as session:
        done = lease(0).end(
            session,
            SyncRun.id == run_id,
            SyncRun.status == SyncStatus.RUNNING,
            owner=owner,
            keep_stamp=True,
            **values,
        )
        if not done:
            return  # another worker has it: what this one fetched is not stored
        if records is not None:
            _write_records(session, records[0], run_id, records[1], records[2])
        if status is SyncStatus.COMPLETE:
            connection_id = session.scalar(
                sa.select(SyncRun.connection_id).where(SyncRun.id == run_id)
            )
            session.execute(
                sa.update(EhrConnection)
                .where(EhrConnection.id == connection_id)
                .values(last_synced_at=now)
                .execution_options(synchronize_session=False)
            )


def _complete(progress: dict[str, Any]) -> set[str]:
    """The sections a progress dict shows complete."""
    return {section for section, p in progress.items() if p["done"]}


@cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS context, built once: loading the CA bundle takes milliseconds."""
    return httpx.create_ssl_context()


def _counted(search: Search) -> bool:
    """Whether the Observations' completeness check waits for this search."""
    return search.resource_type == "Observation" and search.purpose in ("records", "total")


def entries(bundle: dict[str, Any]) -> list[tuple[Any, str]]:
    """(resource, search mode) of a searchset page; OperationOutcome entries are skipped."""
    out: list[tuple[Any, str]] = []
    for entry in bundle.get("entry") or []:
        if not isinstance(entry, dict) or "resource" not in entry:
            continue
        search: dict[str, Any] = entry["search"] if isinstance(entry.get("search"), dict) else {}
        mode = search.get("mode", "match")
        if mode == "outcome":
            continue
        out.append((entry["resource"], str(mode)))
    return out
