"""Signed-in state: who is using the portal in this browser."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import abort, g, redirect, request, session, url_for
from sqlalchemy.orm import joinedload

from portal.db import utcnow
from portal.extensions import db
from portal.models import Account, EhrConnection
from portal.phr.access import AccessDenied, RecordView, open_record

F = TypeVar("F", bound=Callable[..., Any])


def sign_in(account: Account) -> None:
    """Start a fresh session for `account` (nothing of the previous session survives)."""
    session.clear()
    session["account_id"] = account.id
    session.permanent = True
    account.last_login_at = utcnow()


def sign_out() -> None:
    session.clear()


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


def login_required(view: F) -> F:
    """Send a signed-out browser to the sign-in page, and back here afterwards."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_account() is None:
            return redirect(url_for("accounts.signin", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]  # wraps keeps the signature


def record_or_403(owner_id: int | None = None) -> RecordView:
    """The record the signed-in person may see (their own unless `owner_id` was shared)."""
    account = current_account()
    if account is None:
        abort(401)
    try:
        g.record_view = open_record(db.session, account.id, owner_id)
    except AccessDenied:
        abort(403)
    view: RecordView = g.record_view
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
