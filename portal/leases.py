"""Leases on database rows: who may do a piece of work that several processes may try at once.

One pattern serves the sync runs (a run's worker), the token refresh (one refresh per
connection at a time: a refresh token is spent once) and the write-backs (one POST per entry
and clinic at a time). A row's lease is a timestamp column: the holder stamps it when it takes
the lease and again while it works (a heartbeat); the lease has lapsed when the stamp is
older than `seconds` (the holder died or hung) or empty (never taken, or released). Taking
is one conditional UPDATE, so two processes can never both hold it; renewing and ending are
conditional on the holder's name where the row keeps one, so a holder that lost its lease
(taken over after a long pause) learns it and stops.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import QueryableAttribute, Session

from portal.db import utcnow


class Lease:
    """The lease kept in `at` (the holder's last stamp), held for `seconds` after each stamp;
    `owner` (optional) names the holder."""

    # A plain class: a dataclass field typed as a mapped attribute reads as its value type.
    __slots__ = ("at", "owner", "seconds")

    def __init__(
        self,
        at: QueryableAttribute[datetime | None],
        seconds: float,
        owner: QueryableAttribute[str | None] | None = None,
    ) -> None:
        self.at = at
        self.seconds = seconds
        self.owner = owner

    def lapsed(self, now: datetime | None = None) -> sa.ColumnElement[bool]:
        """Rows whose lease nobody holds (for sweeps that look for abandoned work)."""
        cutoff = (now or utcnow()) - timedelta(seconds=self.seconds)
        return sa.or_(self.at.is_(None), self.at < cutoff)

    def take(
        self,
        session: Session,
        *where: sa.ColumnElement[bool],
        free: sa.ColumnElement[bool] | None = None,
        owner: str | None = None,
        now: datetime | None = None,
        **values: Any,
    ) -> bool:
        """Take the lease of the row `where` selects, if it has lapsed (or `free` holds: a
        state in which the row is nobody's whatever its stamp), setting `values` too; True
        when this caller now holds it."""
        now = now or utcnow()
        claimable = self.lapsed(now) if free is None else sa.or_(free, self.lapsed(now))
        if owner is not None:
            values[self._owner().key] = owner
        return self._update(session, [*where, claimable], {self.at.key: now, **values})

    def renew(
        self, session: Session, *where: sa.ColumnElement[bool], owner: str, **values: Any
    ) -> bool:
        """Stamp the lease again (with `values`) if `owner` still holds it; False: it was
        taken over, and the caller must stop."""
        held = self._owner() == owner
        return self._update(session, [*where, held], {self.at.key: utcnow(), **values})

    def end(
        self,
        session: Session,
        *where: sa.ColumnElement[bool],
        owner: str | None = None,
        keep_stamp: bool = False,
        **values: Any,
    ) -> bool:
        """Give the lease up (with `values`: the work's outcome), if `owner` holds it (any
        holder when the row keeps no owner). `keep_stamp` leaves the last stamp (a finished
        run's last sign of life) where the outcome alone says the work is nobody's now."""
        conditions = [*where] if owner is None else [*where, self._owner() == owner]
        stamp = {} if keep_stamp else {self.at.key: None}
        return self._update(session, conditions, {**stamp, **values})

    def _owner(self) -> QueryableAttribute[str | None]:
        column = self.owner
        if column is None:
            raise TypeError("this lease keeps no owner")
        return column

    def _update(
        self, session: Session, where: list[sa.ColumnElement[bool]], values: dict[str, Any]
    ) -> bool:
        done = session.execute(
            sa.update(self.at.class_)
            .where(*where)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]  # CursorResult has rowcount
