"""Test helpers for server-side sessions."""

from __future__ import annotations

from typing import Any

from portal.models import SessionKind


def begin(
    s: Any,
    account_id: int,
    kind: SessionKind = SessionKind.FULL,
    connection_id: int | None = None,
) -> None:
    """Inside `client.session_transaction()`: sign that browser in, as `sign_in` would."""
    s.begin(kind, account_id, connection_id)
