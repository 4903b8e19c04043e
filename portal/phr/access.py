"""Who may see whose record, and do what with it. Every records view calls `open_record`.

A viewer is a person in a kind of session: the owner signed in with their own credentials
sees and manages everything; a browser an EHR launched sees that one clinic's part of the
record and may refresh it, nothing else. Caregiver grants (per category, with expiry,
revocable) plug in here, so no view ever decides access on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.models import Account, EhrConnection


class AccessDenied(Exception):
    """The viewer may not see this record (or this part of it), or may not do this."""


class Action(StrEnum):
    """What a viewer may do with a record besides reading what they see of it."""

    SYNC = "sync"  # fetch the latest from a clinic they see
    ADD = "add"  # add, edit, delete and send the owner's own entries
    MANAGE = "manage"  # connect and disconnect clinics, share, change the account


class ViewerKind(StrEnum):
    OWNER = "owner"  # signed in with the account's own credentials
    LAUNCH = "launch"  # a browser session an EHR launched: that one clinic


@dataclass(frozen=True)
class Viewer:
    """Who is looking: an account, and through which kind of session."""

    account_id: int
    kind: ViewerKind = ViewerKind.OWNER
    connection_id: int | None = None  # LAUNCH: the clinic that launched


EVERYTHING = frozenset(Action)


@dataclass(frozen=True)
class RecordView:
    """A viewer's window on one person's record."""

    owner: Account
    viewer_id: int
    sections: frozenset[str] | None  # None: every section
    connections: tuple[EhrConnection, ...]
    actions: frozenset[Action] = EVERYTHING
    viewer_kind: ViewerKind = ViewerKind.OWNER

    @property
    def is_owner(self) -> bool:
        """The owner, with everything their own account allows (not a launch session)."""
        return self.owner.id == self.viewer_id and self.viewer_kind is ViewerKind.OWNER

    def can(self, action: Action) -> bool:
        return action in self.actions

    def require_action(self, action: Action) -> None:
        if action not in self.actions:
            raise AccessDenied(action)

    def sees_connection(self, connection_id: int) -> bool:
        return any(c.id == connection_id for c in self.connections)

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


# A launch session sees its clinic's records and may refresh them; nothing of the account.
LAUNCH_ACTIONS = frozenset({Action.SYNC})


def open_record(session: Session, viewer: Viewer | int, owner_id: int | None = None) -> RecordView:
    """The record of `owner_id` (default: the viewer's own) as the viewer may see it."""
    if isinstance(viewer, int):
        viewer = Viewer(viewer)
    owner_id = viewer.account_id if owner_id is None else owner_id
    owner = session.get(Account, owner_id)
    if owner is None:
        raise AccessDenied("no such record")
    if owner_id != viewer.account_id:
        raise AccessDenied("not shared with you")
    if "connections" not in sa.inspect(owner).unloaded:  # loaded with it (see web.auth)
        connections = list(owner.connections)
    else:
        connections = list(session.scalars(_CONNECTIONS, {"owner": owner_id}).all())
    if viewer.kind is ViewerKind.LAUNCH:
        # Only the clinic that launched, and only while the portal may still read it there.
        connections = [
            c for c in connections if c.id == viewer.connection_id and c.status == "active"
        ]
        if not connections:
            raise AccessDenied("the launch has ended")
        return RecordView(
            owner=owner,
            viewer_id=viewer.account_id,
            sections=None,
            connections=tuple(connections),
            actions=LAUNCH_ACTIONS,
            viewer_kind=ViewerKind.LAUNCH,
        )
    return RecordView(
        owner=owner, viewer_id=viewer.account_id, sections=None, connections=tuple(connections)
    )
