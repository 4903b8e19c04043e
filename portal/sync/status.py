"""What the patient sees of their connections and syncs: plain-words status, progress, age."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import EhrConnection, EhrServer, FhirRecord, QuarantinedResource, SyncRun
from portal.phr import localtime
from portal.phr.availability import Answer, Availability, and_list, answers, clinic_words
from portal.phr.records import latest_runs
from portal.phr.words import ago_text, date_text
from portal.smart.scopes import SECTION_NAMES
from portal.sync import reasons
from portal.sync.engine import ACTIVE
from portal.sync.plan import OTHER_NAMES


@dataclass(frozen=True)
class SectionProgress:
    name: str
    fetched: int
    done: bool
    error: str | None


@dataclass(frozen=True)
class ConnectionStatus:
    """One connection as the patient sees it: what is stored from it, and how it got there."""

    connection_id: int
    ehr_id: int | None
    ehr_name: str
    status: str  # active | reconnect_needed | disconnected
    last_synced_at: datetime | None  # the end of the last complete update
    run_status: str | None  # queued | running | complete | incomplete | failed | None
    run_error: str | None
    sections: list[SectionProgress] = field(default_factory=list)
    quarantined: int = 0  # resources set aside as unreadable (each once) and not stored since
    answers: dict[str, Answer] = field(default_factory=dict)  # per records section
    # What is stored from this clinic (counted unless the last update completed): records, and
    # when the newest of them was fetched; `fetching` of them, fetched by the running update.
    stored: int | None = None
    stored_at: datetime | None = None
    fetching: int = 0
    now: datetime | None = None  # when this was looked at (for ages)

    @property
    def age(self) -> str | None:
        """ "2 hours ago"; None when no update has completed yet."""
        when = self.last_synced_at
        return ago_text(when, self._now) if when else None

    @property
    def _now(self) -> datetime:
        return self.now or utcnow()

    @property
    def last_synced(self) -> str:
        """ "21 Nov 2025, 10:45" (the patient's time) or "never"."""
        return _when(self.last_synced_at) if self.last_synced_at else "never"

    @property
    def has_records(self) -> bool:
        """Records from this clinic are stored (and so on screen)."""
        return self.last_synced_at is not None or bool(self.stored)

    @property
    def updated(self) -> str:
        """When what is stored from this clinic was fetched, in one sentence."""
        if self.last_synced_at is not None:
            return f"Last updated {self.last_synced} ({self.age})."
        if self.stored and self.stored_at is not None:
            items = _items(self.stored)
            were = "were" if self.stored != 1 else "was"
            return (
                f"No update has finished yet; {items} {were} fetched "
                f"{_when(self.stored_at)} ({ago_text(self.stored_at, self._now)})."
            )
        return "Nothing has been fetched yet."

    @property
    def not_shared(self) -> list[str]:
        """The sections this clinic did not share (wholly or in part), in plain words."""
        return self._names(Availability.NOT_SHARED)

    @property
    def missing(self) -> list[str]:
        """The sections the last update could not fetch."""
        return self._names(Availability.FAILED)

    def _names(self, state: Availability) -> list[str]:
        return sorted(SECTION_NAMES[s] for s, a in self.answers.items() if a.state is state)

    @property
    def parts(self) -> list[str]:
        """What this clinic's part of the record lacks, section by section (the same verdicts
        as the records pages)."""
        return clinic_words(self.ehr_name, self.answers)

    @property
    def set_aside(self) -> str | None:
        """The resources this clinic sent that could not be read, in words."""
        n = self.quarantined
        if not n:
            return None
        were = "were" if n != 1 else "was"
        return f"{_items(n)} from {self.ehr_name} could not be read and {were} set aside."

    @property
    def progress(self) -> list[SectionProgress]:
        """The sections that have something to show (a list of zeros is no news)."""
        return [s for s in self.sections if s.fetched or s.error]

    @property
    def problem(self) -> str | None:
        """Plain words when the record from this clinic may be out of date or incomplete."""
        if self.age:
            data_age = f"What you see here is from {self.age}."
        elif self.stored and self.stored_at is not None:
            data_age = (
                f"What you see here ({_items(self.stored)}) was fetched "
                f"{ago_text(self.stored_at, self._now)}."
            )
        else:
            data_age = "Nothing has been copied yet."
        if self.status == "reconnect_needed":
            return (
                f"{self.ehr_name} needs you to connect again before we can update your record. "
                + data_age
            )
        if self.status == "disconnected":
            return f"You disconnected {self.ehr_name}: it is no longer updated. {data_age}"
        missing = self.missing
        gone = "out of date" if self.last_synced_at else "missing"
        which = (
            f": {and_list(missing)} may be {gone}"
            if missing
            else ", so some parts may be missing or out of date"
        )
        if self.run_status == "failed":
            return f"The last update from {self.ehr_name} did not work{which}. {data_age}"
        if self.run_status == "incomplete":
            return f"The last update from {self.ehr_name} did not finish{which}. {data_age}"
        return None

    @property
    def syncing(self) -> bool:
        return self.run_status in ACTIVE

    @property
    def fetched(self) -> int:
        """What the running update has fetched so far (each record once)."""
        return self.fetching

    @property
    def headline(self) -> str:
        """One sentence on the state of this connection."""
        if self.status == "reconnect_needed":
            return "Needs you to reconnect: your clinic ended the portal's access."
        if self.status == "disconnected":
            return "Disconnected: the portal no longer reads this record."
        if self.run_status == "queued":
            return "Waiting to fetch your records…"
        if self.run_status == "running":
            return f"Fetching your records… {_items(self.fetching)} so far."
        if self.run_status in ("incomplete", "failed"):
            return "The last update did not finish" + (
                f": {self.run_error}" if self.run_error else "."
            )
        if self.last_synced_at is None:
            if self.stored:
                return f"{_items(self.stored)} from {self.ehr_name} in your record."
            return "Not fetched yet."
        return "Up to date."


def _when(when: datetime) -> str:
    return f"{date_text(when)}, {localtime.time_text(when)}"  # on the patient's clock


def _items(n: int) -> str:
    return f"{n:,} item{'s' if n != 1 else ''}"


def connection_status(
    session: Session, connection: EhrConnection, now: datetime | None = None
) -> ConnectionStatus:
    return of_connections(session, [connection], now)[0]


def _status(
    connection: EhrConnection,
    run: SyncRun | None,
    now: datetime | None,
    stored: tuple[int, datetime | None] | None = None,
    fetching: int = 0,
    quarantined: int = 0,
) -> ConnectionStatus:
    last_synced = _last_synced(connection, run)
    count, newest = stored if stored is not None else (None, None)
    return ConnectionStatus(
        now=now,
        connection_id=connection.id,
        ehr_id=connection.ehr_server_id,
        ehr_name=connection.source_name,
        status=connection.status,
        last_synced_at=last_synced,
        run_status=run.status if run else None,
        run_error=reasons.readable(run.error) if run else None,
        sections=_sections(run),
        quarantined=quarantined,
        answers=answers(connection, run, stored=bool(count)),
        stored=count,
        stored_at=newest,
        fetching=fetching,
    )


def _last_synced(connection: EhrConnection, run: SyncRun | None) -> datetime | None:
    """The end of the connection's last complete update. The run and the connection may have
    been read either side of the run's last commit (which sets both): a completed run's end is
    then the newer word."""
    last_synced = connection.last_synced_at
    ended = run.finished_at if run is not None and run.status == "complete" else None
    if ended is not None and (last_synced is None or ended > last_synced):
        last_synced = ended
    return last_synced


def _sections(run: SyncRun | None) -> list[SectionProgress]:
    if run is None:
        return []
    progress: dict[str, Any] = run.progress or {}
    return [
        SectionProgress(
            name=SECTION_NAMES.get(key) or OTHER_NAMES.get(key) or "other records",
            fetched=int(p.get("fetched") or 0),
            done=bool(p.get("done")),
            error=reasons.readable(p.get("error")),
        )
        for key, p in sorted(progress.items())
    ]


def overview(session: Session, account_id: int) -> list[ConnectionStatus]:
    """Every connection of the account, oldest first."""
    connections = session.scalars(
        sa.select(EhrConnection)
        .where(EhrConnection.account_id == account_id, EhrConnection.kind == "ehr")
        .order_by(EhrConnection.id)
    ).all()
    return of_connections(session, connections)


def of_connections(
    session: Session,
    connections: Iterable[EhrConnection],
    now: datetime | None = None,
    runs: dict[int, SyncRun] | None = None,
) -> list[ConnectionStatus]:
    """The status of these connections (a record's), in their order (a few queries for all);
    `runs`: their latest sync runs, when the caller has read them already."""
    connections = list(connections)
    if not connections:
        return []
    if runs is None:
        runs = latest_runs(session, [c.id for c in connections])
    # What is stored is counted only where no update ever completed: elsewhere the time of
    # the last complete one says what is on screen.
    unsure = [c.id for c in connections if _last_synced(c, runs.get(c.id)) is None]
    stored = _stored(session, unsure)
    fetching = {
        cid: _fetched_since(session, cid, run.started_at)
        for cid, run in runs.items()
        if run.status == "running" and run.started_at is not None
    }
    quarantined = set_aside(session, [c.id for c in connections])
    return [
        _status(
            c,
            runs.get(c.id),
            now,
            stored.get(c.id, (0, None)) if c.id in unsure else None,
            fetching.get(c.id, 0),
            quarantined.get(c.id, 0),
        )
        for c in connections
    ]


def _stored(session: Session, ids: list[int]) -> dict[int, tuple[int, datetime | None]]:
    """How many records of each connection are stored, and when the newest was fetched."""
    if not ids:
        return {}
    rows = session.execute(
        sa.select(FhirRecord.connection_id, sa.func.count(), sa.func.max(FhirRecord.fetched_at))
        .where(FhirRecord.connection_id.in_(ids))
        .group_by(FhirRecord.connection_id)
    )
    return {cid: (int(n), newest) for cid, n, newest in rows}


def _fetched_since(session: Session, connection_id: int, started: datetime) -> int:
    """Records of the connection fetched (new or again) since the running update started."""
    query = sa.select(sa.func.count()).where(
        FhirRecord.connection_id == connection_id, FhirRecord.fetched_at >= started
    )
    return int(session.scalar(query) or 0)


def set_aside(session: Session, ids: list[int]) -> dict[int, int]:
    """Per connection, the resources set aside as unreadable: each once however many
    sections or updates it came with, and only while no readable version of it is stored."""
    if not ids:
        return {}
    rows = session.execute(_SET_ASIDE, {"ids": ids})
    return {int(cid): int(n) for cid, n in rows}


def _set_aside() -> sa.Select[int, int]:
    q = QuarantinedResource
    stored = (
        sa.select(FhirRecord.id)
        .where(
            FhirRecord.connection_id == q.connection_id,
            FhirRecord.resource_type == q.resource_type,
            FhirRecord.resource_id == q.resource_id,
        )
        .exists()
    )
    # One without a type or id is a resource of its own: counted by its row.
    which = sa.func.coalesce(q.resource_type + "/" + q.resource_id, "#" + sa.cast(q.id, sa.String))
    return (
        sa.select(q.connection_id, sa.func.count(sa.distinct(which)))
        .where(q.connection_id.in_(sa.bindparam("ids", expanding=True)), ~stored)
        .group_by(q.connection_id)
    )


_SET_ASIDE = _set_aside()  # built once: the status is read on every summary and poll


def registry(session: Session) -> list[EhrServer]:
    return list(session.scalars(sa.select(EhrServer).order_by(EhrServer.name)))


def age_in_words(when: datetime | None, now: datetime | None = None) -> str:
    """ "3 minutes ago", "2 days ago"; "never" for None."""
    return "never" if when is None else ago_text(when, now or utcnow())
