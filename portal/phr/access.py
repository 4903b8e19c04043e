"""Who may see whose record. Every records view calls `open_record` itself.

Today a person sees their own record; caregiver grants (per category, with expiry, revocable)
plug in here, so no view ever decides access on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.models import Account, EhrConnection


class AccessDenied(Exception):
    """The viewer may not see this record (or this part of it)."""


@dataclass(frozen=True)
class RecordView:
    """A viewer's window on one person's record."""

    owner: Account
    viewer_id: int
    sections: frozenset[str] | None  # None: every section
    connections: tuple[EhrConnection, ...]

    @property
    def is_owner(self) -> bool:
        return self.owner.id == self.viewer_id

    @property
    def connection_ids(self) -> list[int]:
        return [c.id for c in self.connections]

    def allows(self, section: str) -> bool:
        return self.sections is None or section in self.sections

    def require(self, section: str) -> None:
        if not self.allows(section):
            raise AccessDenied(section)


# Built once: every page opens a record, and building the statement costs more than running it.
# A disconnected clinic is no longer read, but what was fetched from it stays in the record.
_CONNECTIONS = (
    sa.select(EhrConnection)
    .where(EhrConnection.account_id == sa.bindparam("owner"))
    .order_by(EhrConnection.id)
)


def open_record(session: Session, viewer_id: int, owner_id: int | None = None) -> RecordView:
    """The record of `owner_id` (default: the viewer's own) as the viewer may see it."""
    owner_id = viewer_id if owner_id is None else owner_id
    owner = session.get(Account, owner_id)
    if owner is None:
        raise AccessDenied("no such record")
    if owner_id != viewer_id:
        raise AccessDenied("not shared with you")
    if "connections" not in sa.inspect(owner).unloaded:  # loaded with it (see web.auth)
        connections = list(owner.connections)
    else:
        connections = list(session.scalars(_CONNECTIONS, {"owner": owner_id}).all())
    return RecordView(
        owner=owner, viewer_id=viewer_id, sections=None, connections=tuple(connections)
    )
