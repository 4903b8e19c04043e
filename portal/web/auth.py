"""Signed-in state: who is using the portal in this browser, and through which kind of session.

The session itself is server-side (portal.web.sessions); here is what it means: sign in (a new
session id every time what the browser may do changes), sign out, the current account and
viewer, and the guard that sends a signed-out browser to the sign-in page.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import abort, g, redirect, request, session, url_for
from flask_htmx.responses import HTMXResponseClientRedirect
from sqlalchemy.orm import joinedload

from portal.db import utcnow
from portal.extensions import db, htmx
from portal.models import Account, EhrConnection, SessionKind
from portal.phr.access import AccessDenied, Action, RecordView, Viewer, ViewerKind, open_record
from portal.web.sessions import DRAFT_KEY, ServerSession, current_session, interface

F = TypeVar("F", bound=Callable[..., Any])


def _server_session() -> ServerSession:
    current = current_session()
    assert current is not None  # every page but static files has one
    return current


def sign_in(
    account: Account, *, kind: SessionKind = SessionKind.FULL, connection_id: int | None = None
) -> None:
    """Start a fresh session for `account` under a new id (nothing of the previous session
    survives but a draft of this same account)."""
    _server_session().begin(kind, account.id, connection_id)
    g.pop("current_account", None)
    account.last_login_at = utcnow()


def sign_out() -> None:
    """End this browser's session (the server forgets it; the cookie is useless after)."""
    _server_session().begin(SessionKind.ANONYMOUS, None)
    g.pop("current_account", None)


def session_kind() -> SessionKind:
    return _server_session().kind


def is_launch_session() -> bool:
    return session.get("account_id") is not None and session_kind() is SessionKind.LAUNCH


def end_other_sessions(account: Account) -> None:
    """End every session of `account` but this browser's (after a password change or reset,
    or when the person asks to), once the request has committed.

    A browser that has just signed in again keeps nothing of its old session: it gets its new
    one after this runs."""
    current = _server_session()
    keep = current.record.sid_hash if current.record is not None and not current.rotate else None
    store, account_id = interface().store, account.id
    db.after_commit(lambda: store.delete_for_account(account_id, keep=keep))


def act_as(account_id: int) -> None:
    """This request context (prepared pages, in the background) sees what `account_id`'s own
    full session would; nothing is stored and no cookie is made."""
    current = _server_session()
    current.transient = True
    current["account_id"] = account_id
    current.kind = SessionKind.FULL


_WITH_CONNECTIONS = (joinedload(Account.connections).joinedload(EhrConnection.ehr),)


def current_account() -> Account | None:
    if "current_account" not in g:
        account_id = session.get("account_id")
        # With its connections in the same query: the records pages open them right after.
        g.current_account = (
            db.session.get(Account, account_id, options=_WITH_CONNECTIONS) if account_id else None
        )
    account: Account | None = g.current_account
    return account


def current_viewer() -> Viewer | None:
    account = current_account()
    if account is None:
        return None
    if session_kind() is SessionKind.LAUNCH:
        return Viewer(account.id, ViewerKind.LAUNCH, _server_session().connection_id)
    return Viewer(account.id)


def login_required(view: F) -> F:
    """Send a signed-out browser to the sign-in page, and back here afterwards."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_account() is None:
            return to_signin()
        return view(*args, **kwargs)

    wrapped.needs_signin = True  # type: ignore[attr-defined]  # see session_pages
    return wrapped  # type: ignore[return-value]  # wraps keeps the signature


def full_session_required(view: F) -> F:
    """Pages that change the account or see all of it: a launch session is asked for the
    account's password first (signed-out browsers go to sign-in as usual)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_account() is None:
            return to_signin()
        if is_launch_session():
            return go(url_for("sessions.unlock", next=_here()))
        return view(*args, **kwargs)

    wrapped.needs_signin = True  # type: ignore[attr-defined]  # see session_pages
    return wrapped  # type: ignore[return-value]  # wraps keeps the signature


def _here() -> str:
    """The page the person is on: for an htmx request, the page that made it."""
    if htmx and htmx.current_url:
        parts = urlsplit(htmx.current_url)
        if parts.netloc == request.host:
            return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if request.method == "GET":
        return request.full_path.rstrip("?")
    return request.path  # the portal's forms post to the page that shows them


def go(target: str) -> Any:
    """A redirect that also works for htmx requests (which would swap the sign-in page in)."""
    if htmx:
        return HTMXResponseClientRedirect(target)
    return redirect(target)


def to_signin() -> Any:
    """To the sign-in page, then back to where the person was."""
    return go(url_for("accounts.signin", next=_here()))


def record_or_403(owner_id: int | None = None, action: Action | None = None) -> RecordView:
    """The record the signed-in person may see (their own unless `owner_id` was shared), once
    they may do `action` with it."""
    viewer = current_viewer()
    if viewer is None:
        abort(401)
    try:
        view = open_record(db.session, viewer, owner_id)
        if action is not None:
            view.require_action(action)
    except AccessDenied:
        abort(403)
    g.record_view = view
    return view


def safe_next(target: str | None, default: str) -> str:
    """A local path to go to after signing in; anything else (other hosts, schemes) is refused."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target:
        return default
    return target


def keep_draft(account_id: int) -> None:
    """Keep what a person whose session ended had typed, for their next sign-in (no secrets)."""
    fields = {
        name: request.form.getlist(name)
        for name in request.form
        if name != "csrf_token" and "password" not in name and name != "confirm"
    }
    if fields:
        session[DRAFT_KEY] = {"path": request.path, "account": account_id, "fields": fields}
