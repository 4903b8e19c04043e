"""Connections in a given state for one section: grants without it, syncs stuck or failed on it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import EhrConnection, SyncRun
from portal.phr.availability import SEARCHES
from portal.smart.scopes import SECTION_SOURCES

BUSY = "Riverside General Hospital kept saying it was too busy while sending {label}"


def scope_without(*sections: str) -> str:
    """A granted scope with every search behind the records sections but those of `sections`."""
    refused = {source for section in sections for source in SEARCHES[section]}
    wanted = {s for sources in SECTION_SOURCES.values() for s in sources} - refused
    by_type: dict[str, set[str | None]] = {}
    for rtype, category in wanted:
        by_type.setdefault(rtype, set()).add(category)
    parts = ["openid", "fhirUser"]
    for rtype, categories in sorted(by_type.items()):
        if None in categories:
            parts.append(f"patient/{rtype}.rs")
        else:
            parts.append(f"patient/{rtype}.rs?category={','.join(sorted(map(str, categories)))}")
    return " ".join(parts)


def progress(**sections: dict[str, Any]) -> dict[str, Any]:
    """A run's progress: every section done with nothing, but those given (merged in)."""
    out = {
        s: {"fetched": 0, "done": True, "quarantined": 0, "error": None} for s in SECTION_SOURCES
    }
    for section, changes in sections.items():
        out[section] = {**out[section], **changes}
    return out


def add_run(
    session: Session,
    connection: EhrConnection,
    status: str = "complete",
    progress: dict[str, Any] | None = None,
    error: str | None = None,
    started_at: datetime | None = None,
) -> SyncRun:
    """A sync run of the connection; a complete one also sets the connection's last sync."""
    now = utcnow()
    started = started_at or now - timedelta(minutes=5)
    ended = None if status in ("queued", "running") else now
    run = SyncRun(
        connection_id=connection.id,
        status=status,
        progress=progress if progress is not None else {},
        error=error,
        started_at=started if status != "queued" else None,
        finished_at=ended,
        heartbeat_at=now,
    )
    session.add(run)
    if status == "complete":
        connection.last_synced_at = now
    session.flush()
    return run
