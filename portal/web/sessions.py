"""Server-side sessions for Flask: the cookie holds a random id, everything else stays here.

A session ends after `SESSION_IDLE_TIMEOUT` without activity or `SESSION_ABSOLUTE_TIMEOUT`
after sign-in (HIPAA automatic logoff, ASVS V7). Requests a page makes by itself (the sync
status poll, the session watch) are passive: they do not count as activity. The id changes at
sign-in and at every change of what the session may do; sign-out deletes the session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from flask import Flask, Request, Response, current_app, request
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from portal.db import utcnow
from portal.extensions import db
from portal.models import SessionKind
from portal.sessions import Timeouts, digest, new_session_id
from portal.sessions.store import DatabaseStore, RedisStore, SessionRecord, SessionStore

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Why this browser's previous session ended: {"why": "idle" | "absolute", "account": id}
ENDED_KEY = "_ended"
DRAFT_KEY = "_draft"  # what a signed-out person had typed: {"path", "account", "fields"}
_serializer = TaggedJSONSerializer()


def passive(view: F) -> F:
    """Mark a view as one a page calls by itself: it does not keep the session alive."""
    view._passive_session = True  # type: ignore[attr-defined]
    return view


class ServerSession(CallbackDict[str, Any], SessionMixin):
    """Flask's session dict, plus what the store knows about it."""

    def __init__(
        self,
        initial: dict[str, Any] | None = None,
        record: SessionRecord | None = None,
        session_id: str | None = None,
    ) -> None:
        def on_update(_self: Any) -> None:
            self.modified = True

        super().__init__(initial, on_update)
        self.record = record
        self.session_id = session_id
        self.modified = False
        self.kind = record.kind if record else SessionKind.ANONYMOUS
        self.connection_id = record.connection_id if record else None
        self.rotate = False  # a new id at the next save; the old session is deleted
        self.transient = False  # never saved (pages prepared in the background)

    def begin(
        self, kind: SessionKind, account_id: int | None, connection_id: int | None = None
    ) -> None:
        """Start over as `kind` under a new id: nothing of the previous session survives but a
        draft of this same account."""
        draft = self.get(DRAFT_KEY)
        self.clear()
        if draft and account_id is not None and draft.get("account") == account_id:
            self[DRAFT_KEY] = draft
        if account_id is not None:
            self["account_id"] = account_id
        self.kind = kind
        self.connection_id = connection_id
        self.rotate = True
        self.modified = True


class PortalSessionInterface(SessionInterface):
    """Sessions kept in a `SessionStore`; see the module docstring."""

    serializer = _serializer

    def __init__(self, store: SessionStore, timeouts: Timeouts) -> None:
        self.store = store
        self.timeouts = timeouts
        self.clock: Callable[[], datetime] = utcnow  # tests move it
        self._next_purge: datetime | None = None

    # -- reading ---------------------------------------------------------------------------------

    def open_session(self, app: Flask, request: Request) -> ServerSession | None:
        if request.endpoint == "static":
            return self.make_null_session(app)  # type: ignore[return-value]
        session_id = request.cookies.get(self.get_cookie_name(app))
        if not session_id:
            return ServerSession()
        record = self.store.get(digest(session_id))
        if record is None:
            return ServerSession()
        now = self.clock()
        if record.ends_at() <= now:
            self.store.delete(record.sid_hash)
            return self._ended(record, now)
        data = self.serializer.loads(record.data) if record.data else {}
        return ServerSession(data, record, session_id)

    def _ended(self, record: SessionRecord, now: datetime) -> ServerSession:
        """A fresh session that remembers why the last one ended (for the sign-in page), and
        keeps a draft the person may still want."""
        session = ServerSession()
        if record.account_id is not None:
            why = "absolute" if record.expires_at <= now else "idle"
            session[ENDED_KEY] = {"why": why, "account": record.account_id}
            old = self.serializer.loads(record.data) if record.data else {}
            if old.get(DRAFT_KEY):
                session[DRAFT_KEY] = old[DRAFT_KEY]
        return session

    # -- writing ---------------------------------------------------------------------------------

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, ServerSession) or session.transient:
            return
        now = self.clock()
        if session.rotate or (session.record is None and (session.modified or session)):
            if session.record is not None:
                self.store.delete(session.record.sid_hash)
            if not session and session.kind is SessionKind.ANONYMOUS and session.rotate:
                self._forget_cookie(app, response)  # signed out, nothing to keep
                return
            self._create(app, session, response, now)
            return
        if session.record is None:
            return
        active = not _is_passive()
        if session.modified:
            record = session.record
            if active:
                record = record.touched(now, now + self.timeouts.idle)
            self.store.save(_with_data(record, session, self.serializer))
        elif active and now - session.record.last_seen_at >= self.timeouts.touch_interval:
            self.store.touch(session.record.touched(now, now + self.timeouts.idle))

    def _create(
        self, app: Flask, session: ServerSession, response: Response, now: datetime
    ) -> None:
        session_id = new_session_id()
        record = SessionRecord(
            sid_hash=digest(session_id),
            kind=session.kind,
            account_id=None,  # from the data, below
            connection_id=session.connection_id,
            created_at=now,
            last_seen_at=now,
            idle_until=min(now + self.timeouts.idle, now + self.timeouts.absolute),
            expires_at=now + self.timeouts.absolute,
            user_agent=(request.user_agent.string or "")[:300],
        )
        self.store.save(_with_data(record, session, self.serializer))
        session.record, session.session_id, session.rotate = record, session_id, False
        if self._next_purge is None or self._next_purge <= now:  # ended sessions, now and then
            self._next_purge = now + self.timeouts.idle
            self.store.purge(now)
        response.set_cookie(
            self.get_cookie_name(app),
            session_id,
            httponly=self.get_cookie_httponly(app),
            secure=self.get_cookie_secure(app),
            samesite=self.get_cookie_samesite(app),
            path=self.get_cookie_path(app),
            domain=self.get_cookie_domain(app),
            # No expiry: the cookie goes when the browser closes; the server ends it sooner.
        )
        response.vary.add("Cookie")

    def _forget_cookie(self, app: Flask, response: Response) -> None:
        response.delete_cookie(
            self.get_cookie_name(app),
            path=self.get_cookie_path(app),
            domain=self.get_cookie_domain(app),
            secure=self.get_cookie_secure(app),
            httponly=self.get_cookie_httponly(app),
            samesite=self.get_cookie_samesite(app),
        )


def _with_data(
    record: SessionRecord, session: ServerSession, serializer: TaggedJSONSerializer
) -> SessionRecord:
    account_id = session.get("account_id")
    if account_id is not None and session.kind is SessionKind.ANONYMOUS:
        raise ValueError("a signed-in session has a kind: sign in through portal.web.auth")
    return replace(
        record,
        account_id=account_id,
        kind=session.kind if account_id is not None else SessionKind.ANONYMOUS,
        connection_id=session.connection_id,
        data=serializer.dumps(dict(session)),
    )


def _is_passive() -> bool:
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, "_passive_session", False))


def make_store(app: Flask) -> SessionStore:
    """Redis when REDIS_URL is set, else the portal database."""
    url = app.config.get("REDIS_URL")
    if url:
        import redis

        client = redis.Redis.from_url(str(url))
        return RedisStore(client, prefix=str(app.config.get("REDIS_KEY_PREFIX", "portal:")))
    return DatabaseStore(db.sessionmaker(app))


def init_app(app: Flask) -> PortalSessionInterface:
    interface = PortalSessionInterface(make_store(app), Timeouts.from_config(app.config))
    app.session_interface = interface
    return interface


def interface() -> PortalSessionInterface:
    found = current_app.session_interface
    assert isinstance(found, PortalSessionInterface)
    return found


def current_session() -> ServerSession | None:
    """This request's server session (None for static files, which have none)."""
    from flask import session

    found = session._get_current_object()  # type: ignore[attr-defined]  # a LocalProxy
    return found if isinstance(found, ServerSession) else None
