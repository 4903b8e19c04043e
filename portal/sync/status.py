"""What the patient sees of their connections and syncs: plain-words status, progress, age."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import EhrConnection, EhrServer, SyncRun
from portal.phr.words import ago_text, date_text
from portal.smart.scopes import SECTION_NAMES, missing_sections
from portal.sync import reasons
from portal.sync.engine import ACTIVE


@dataclass(frozen=True)
class SectionProgress:
    name: str
    fetched: int
    done: bool
    error: str | None


@dataclass(frozen=True)
class ConnectionStatus:
    """One connection as the patient sees it."""

    connection_id: int
    ehr_id: int | None
    ehr_name: str
    status: str  # active | reconnect_needed | disconnected
    last_synced_at: datetime | None
    run_status: str | None  # queued | running | complete | incomplete | failed | None
    run_error: str | None
    sections: list[SectionProgress] = field(default_factory=list)
    quarantined: int = 0
    not_shared: list[str] = field(default_factory=list)
    now: datetime | None = None  # when this was looked at (for ages)

    @property
    def age(self) -> str | None:
        """ "2 hours ago"; None when nothing has been fetched yet."""
        when = self.last_synced_at
        return ago_text(when, self.now or utcnow()) if when else None

    @property
    def last_synced(self) -> str:
        """ "21 Nov 2025, 10:45 UTC" or "never"."""
        when = self.last_synced_at
        return f"{date_text(when)}, {when.strftime('%H:%M')} UTC" if when else "never"

    @property
    def progress(self) -> list[SectionProgress]:
        """The sections that have something to show (a list of zeros is no news)."""
        return [s for s in self.sections if s.fetched or s.error]

    @property
    def problem(self) -> str | None:
        """Plain words when the record from this clinic may be out of date or incomplete."""
        age = self.age
        data_age = f"What you see here is from {age}." if age else "Nothing has been copied yet."
        if self.status == "reconnect_needed":
            return (
                f"{self.ehr_name} needs you to connect again before we can update your record. "
                + data_age
            )
        if self.status == "disconnected":
            return f"You disconnected {self.ehr_name}: it is no longer updated. {data_age}"
        if self.run_status == "failed":
            return f"The last update from {self.ehr_name} did not work. {data_age}"
        if self.run_status == "incomplete":
            return (
                f"The last update from {self.ehr_name} did not finish, so some parts may be "
                f"missing or out of date. {data_age}"
            )
        return None

    @property
    def syncing(self) -> bool:
        return self.run_status in ACTIVE

    @property
    def fetched(self) -> int:
        return sum(s.fetched for s in self.sections)

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
            return f"Fetching your records… {self.fetched} items so far."
        if self.run_status in ("incomplete", "failed"):
            return "The last update did not finish" + (
                f": {self.run_error}" if self.run_error else "."
            )
        if self.last_synced_at is None:
            return "Not fetched yet."
        return "Up to date."


def connection_status(
    session: Session, connection: EhrConnection, now: datetime | None = None
) -> ConnectionStatus:
    return of_connections(session, [connection], now)[0]


def _status(
    connection: EhrConnection, run: SyncRun | None, now: datetime | None
) -> ConnectionStatus:
    # The run and the connection may have been read either side of the run's last commit
    # (which sets both): a completed run's end is then the newer word.
    last_synced = connection.last_synced_at
    ended = run.finished_at if run is not None and run.status == "complete" else None
    if ended is not None and (last_synced is None or ended > last_synced):
        last_synced = ended
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
        quarantined=sum(int(p.get("quarantined") or 0) for p in (run.progress or {}).values())
        if run
        else 0,
        not_shared=sorted(SECTION_NAMES[s] for s in missing_sections(connection.granted_scope)),
    )


def _sections(run: SyncRun | None) -> list[SectionProgress]:
    if run is None:
        return []
    progress: dict[str, Any] = run.progress or {}
    return [
        SectionProgress(
            name=SECTION_NAMES.get(key, key),
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
    session: Session, connections: Iterable[EhrConnection], now: datetime | None = None
) -> list[ConnectionStatus]:
    """The status of these connections (a record's), in their order (one query for all)."""
    connections = list(connections)
    if not connections:
        return []
    runs = {
        run.connection_id: run
        for run in session.scalars(_LATEST_RUNS, {"ids": [c.id for c in connections]})
    }
    return [_status(c, runs.get(c.id), now) for c in connections]


# Each connection's most recent run (built once: the summary asks on every visit).
_LATEST_RUNS = sa.select(SyncRun).where(
    SyncRun.id.in_(
        sa.select(sa.func.max(SyncRun.id))
        .where(SyncRun.connection_id.in_(sa.bindparam("ids", expanding=True)))
        .group_by(SyncRun.connection_id)
    )
)


def registry(session: Session) -> list[EhrServer]:
    return list(session.scalars(sa.select(EhrServer).order_by(EhrServer.name)))


def age_in_words(when: datetime | None, now: datetime | None = None) -> str:
    """ "3 minutes ago", "2 days ago"; "never" for None."""
    return "never" if when is None else ago_text(when, now or utcnow())
