"""Records pages prepared once per version of the record, then served as they are.

A page of a large record takes milliseconds of queries, FHIR decoding and rendering; the
record changes only when a sync stores something (`EhrConnection.data_version`). So a page
part, once rendered, is kept under a key made of everything it depends on: who looks (viewer,
the sections they may see, their units and time zone), whose record, the record's version,
the day on the viewer's calendar (ages, "current"),
the code and templates that drew it (`build`), and the page and its validated parameters.
Any change gives a new key: there is nothing to invalidate, stale rows are pruned on write.

Callers check access first (`portal.phr.access`); a snapshot is never a way around it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.db import upsert_insert, utcnow
from portal.models import PageSnapshot
from portal.phr import preferences
from portal.phr.access import RecordView


@dataclass(frozen=True)
class Snapshot:
    title: str
    banner: str | None  # the patient banner (full pages only)
    body: str


def version(view: RecordView) -> str:
    """Everything about the record a prepared page depends on, as one digest."""
    parts: list[Any] = [view.owner.id, view.owner.display_name]
    for c in view.connections:
        parts += [
            c.id,
            c.data_version,
            c.status,
            c.granted_scope,
            c.kind,
            c.ehr_server_id,
            c.source_name,
            c.need_patient_banner,
            c.smart_style_url,
        ]
    return _digest(parts)


def key(view: RecordView, build: str, today: date, page: Sequence[Any]) -> str:
    sections = "*" if view.sections is None else ",".join(sorted(view.sections))
    actions = ",".join(sorted(view.actions))  # what the page offers (adding entries...)
    shown = preferences.current().key  # the viewer's units and time zone: a change shows at once
    return _digest(
        [build, view.viewer_id, sections, actions, shown, version(view), today.isoformat(), *page]
    )


def _digest(parts: Sequence[Any]) -> str:
    return hashlib.sha256("\x1f".join(map(repr, parts)).encode()).hexdigest()


def find(session: Session, snapshot_key: str) -> Snapshot | None:
    row = session.execute(
        sa.select(PageSnapshot.title, PageSnapshot.banner, PageSnapshot.body).where(
            PageSnapshot.key == snapshot_key
        )
    ).first()
    return Snapshot(*row) if row else None


def keep(session: Session, view: RecordView, snapshot_key: str, snapshot: Snapshot) -> None:
    """Store a prepared page (in the caller's transaction) and drop this record's pages of
    other versions. Two requests preparing the same page at once keep the first one."""
    current = version(view)
    session.execute(
        sa.delete(PageSnapshot).where(
            PageSnapshot.account_id == view.owner.id, PageSnapshot.version != current
        )
    )
    session.execute(
        upsert_insert(session.get_bind().dialect.name, PageSnapshot.__table__)
        .values(
            account_id=view.owner.id,
            key=snapshot_key,
            version=current,
            title=snapshot.title,
            banner=snapshot.banner,
            body=snapshot.body,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["key"])
    )


def forget(session: Session, account_id: int) -> None:
    """Drop every prepared page of a record (e.g. when its owner deletes data)."""
    session.execute(sa.delete(PageSnapshot).where(PageSnapshot.account_id == account_id))
