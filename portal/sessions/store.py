"""Where browser sessions live: the database by default, Redis when `REDIS_URL` is set.

Both stores keep the same fields and answer the same questions: one session by its id's digest,
and every session of an account (for the account page and for ending them all at once). The
cookie carries only the random id; the stores know it only as a SHA-256 digest, so a copy of
the store does not let anyone into a session.

A store writes in transactions of its own, after the request's one commit: sessions are not
record data, and a session must be saved even when the request answered with an error (a
form shown again with its errors still needs its CSRF secret).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from portal.models import BrowserSession, SessionKind


@dataclass(frozen=True)
class SessionRecord:
    """One browser session as stored; `data` is Flask's session dict (tagged JSON text)."""

    sid_hash: str
    kind: SessionKind
    account_id: int | None
    connection_id: int | None
    created_at: datetime
    last_seen_at: datetime
    idle_until: datetime
    expires_at: datetime
    user_agent: str = ""
    data: str = field(default="", repr=False)

    def ends_at(self) -> datetime:
        """When the session ends if nothing happens: idle or absolute, whichever is first."""
        return min(self.idle_until, self.expires_at)

    def touched(self, now: datetime, idle_until: datetime) -> SessionRecord:
        return replace(self, last_seen_at=now, idle_until=min(idle_until, self.expires_at))


class SessionStore(Protocol):
    """What the session interface needs of a store."""

    def get(self, sid_hash: str) -> SessionRecord | None: ...

    def save(self, record: SessionRecord) -> None: ...

    def touch(self, record: SessionRecord) -> None: ...

    def delete(self, sid_hash: str) -> None: ...

    def for_account(self, account_id: int, now: datetime) -> list[SessionRecord]: ...

    def delete_for_account(self, account_id: int, keep: str | None = None) -> int: ...

    def purge(self, now: datetime) -> int: ...


_COLUMNS = (
    "sid_hash",
    "kind",
    "account_id",
    "connection_id",
    "created_at",
    "last_seen_at",
    "idle_until",
    "expires_at",
    "user_agent",
    "data",
)


def _from_row(row: BrowserSession) -> SessionRecord:
    return SessionRecord(**{name: getattr(row, name) for name in _COLUMNS})


class DatabaseStore:
    """Sessions in the portal database (the embedded default), each write its own transaction."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def get(self, sid_hash: str) -> SessionRecord | None:
        with self.factory() as session:
            row = session.scalar(
                sa.select(BrowserSession).where(BrowserSession.sid_hash == sid_hash)
            )
            return _from_row(row) if row is not None else None

    def save(self, record: SessionRecord) -> None:
        values = {name: getattr(record, name) for name in _COLUMNS}
        with self.factory.begin() as session:
            updated = session.execute(
                sa.update(BrowserSession)
                .where(BrowserSession.sid_hash == record.sid_hash)
                .values(**values)
            )
            if not updated.rowcount:  # type: ignore[attr-defined]  # a CursorResult
                session.add(BrowserSession(**values))

    def touch(self, record: SessionRecord) -> None:
        with self.factory.begin() as session:
            session.execute(
                sa.update(BrowserSession)
                .where(BrowserSession.sid_hash == record.sid_hash)
                .values(last_seen_at=record.last_seen_at, idle_until=record.idle_until)
            )

    def delete(self, sid_hash: str) -> None:
        with self.factory.begin() as session:
            session.execute(sa.delete(BrowserSession).where(BrowserSession.sid_hash == sid_hash))

    def for_account(self, account_id: int, now: datetime) -> list[SessionRecord]:
        with self.factory() as session:
            rows = session.scalars(
                sa.select(BrowserSession)
                .where(
                    BrowserSession.account_id == account_id,
                    BrowserSession.idle_until > now,
                    BrowserSession.expires_at > now,
                )
                .order_by(BrowserSession.last_seen_at.desc())
            )
            return [_from_row(row) for row in rows]

    def delete_for_account(self, account_id: int, keep: str | None = None) -> int:
        statement = sa.delete(BrowserSession).where(BrowserSession.account_id == account_id)
        if keep is not None:
            statement = statement.where(BrowserSession.sid_hash != keep)
        with self.factory.begin() as session:
            return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]

    def purge(self, now: datetime) -> int:
        with self.factory.begin() as session:
            result = session.execute(
                sa.delete(BrowserSession).where(
                    sa.or_(BrowserSession.idle_until <= now, BrowserSession.expires_at <= now)
                )
            )
            return int(result.rowcount)  # type: ignore[attr-defined]


def _encode(record: SessionRecord) -> str:
    values: dict[str, Any] = {name: getattr(record, name) for name in _COLUMNS}
    for name in ("created_at", "last_seen_at", "idle_until", "expires_at"):
        values[name] = values[name].timestamp()
    return json.dumps(values, separators=(",", ":"))


def _decode(text: str | bytes) -> SessionRecord:
    values = json.loads(text)
    for name in ("created_at", "last_seen_at", "idle_until", "expires_at"):
        values[name] = datetime.fromtimestamp(values[name], UTC)
    values["kind"] = SessionKind(values["kind"])
    return SessionRecord(**values)


class RedisStore:
    """Sessions in Redis (production): a key per session that expires with it, and a set of
    each account's session digests for the account page and for ending them together."""

    def __init__(self, client: Any, prefix: str = "portal:") -> None:
        self.redis = client
        self.prefix = prefix

    def _key(self, sid_hash: str) -> str:
        return f"{self.prefix}session:{sid_hash}"

    def _index(self, account_id: int) -> str:
        return f"{self.prefix}account-sessions:{account_id}"

    def get(self, sid_hash: str) -> SessionRecord | None:
        text = self.redis.get(self._key(sid_hash))
        return _decode(text) if text is not None else None

    def save(self, record: SessionRecord) -> None:
        pipe = self.redis.pipeline()
        pipe.set(self._key(record.sid_hash), _encode(record), exat=_epoch(record.ends_at()))
        if record.account_id is not None:
            index = self._index(record.account_id)
            pipe.sadd(index, record.sid_hash)
            pipe.expireat(index, _epoch(record.expires_at), gt=True)
            pipe.expireat(index, _epoch(record.expires_at), nx=True)
        pipe.execute()

    def touch(self, record: SessionRecord) -> None:
        # The whole record again: the same size as a partial update, and it moves the expiry.
        self.redis.set(
            self._key(record.sid_hash), _encode(record), exat=_epoch(record.ends_at()), xx=True
        )

    def delete(self, sid_hash: str) -> None:
        record = self.get(sid_hash)
        pipe = self.redis.pipeline()
        pipe.delete(self._key(sid_hash))
        if record is not None and record.account_id is not None:
            pipe.srem(self._index(record.account_id), sid_hash)
        pipe.execute()

    def _members(self, account_id: int) -> list[str]:
        return sorted(
            m.decode() if isinstance(m, bytes) else str(m)
            for m in self.redis.smembers(self._index(account_id))
        )

    def for_account(self, account_id: int, now: datetime) -> list[SessionRecord]:
        members = self._members(account_id)
        if not members:
            return []
        found: list[SessionRecord] = []
        gone: list[str] = []
        for sid_hash, text in zip(
            members, self.redis.mget([self._key(m) for m in members]), strict=True
        ):
            if text is None:
                gone.append(sid_hash)
                continue
            record = _decode(text)
            if record.ends_at() > now:
                found.append(record)
        if gone:  # sessions Redis expired by itself
            self.redis.srem(self._index(account_id), *gone)
        return sorted(found, key=lambda r: r.last_seen_at, reverse=True)

    def delete_for_account(self, account_id: int, keep: str | None = None) -> int:
        doomed = [m for m in self._members(account_id) if m != keep]
        if not doomed:
            return 0
        pipe = self.redis.pipeline()
        pipe.delete(*(self._key(m) for m in doomed))
        pipe.srem(self._index(account_id), *doomed)
        deleted, _removed = pipe.execute()
        return int(deleted)

    def purge(self, now: datetime) -> int:
        return 0  # Redis expires sessions by itself


def _epoch(when: datetime) -> int:
    return max(1, int(when.timestamp()) + 1)
