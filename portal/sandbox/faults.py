"""Injected faults, for tests and demos (off by default).

Kept in the database so every worker of an instance sees the same faults.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.sandbox.models import Fault

# name -> what `value` means
FAULTS = {
    "latency_ms": "delay every FHIR response by this many milliseconds",
    "rate_limit": "answer FHIR requests with 429; value = Retry-After seconds",
    "unavailable": "answer FHIR requests with 503; value = Retry-After seconds",
    "token_lifetime": "issue access tokens that expire after this many seconds",
    "no_refresh_token": "issue no refresh token",
    "malformed_resource": "put one malformed resource into each search page",
    "looping_next": "make Bundle.link[next] point back at the same page",
}


def set_fault(session: Session, name: str, value: int = 1, remaining: int | None = None) -> None:
    """Switch a fault on; `remaining` limits it to that many uses."""
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}")
    fault = session.get(Fault, name) or Fault(name=name)
    fault.value = value
    fault.remaining = remaining
    session.add(fault)
    session.flush()


def clear_faults(session: Session) -> None:
    session.execute(sa.delete(Fault))


def current(session: Session) -> dict[str, dict[str, int | None]]:
    return {
        f.name: {"value": f.value, "remaining": f.remaining}
        for f in session.scalars(sa.select(Fault))
    }


def take(session: Session, name: str) -> int | None:
    """The fault's value if it is on (using up one of its uses), else None."""
    fault = session.get(Fault, name)
    if fault is None:
        return None
    if fault.remaining is None:
        return fault.value
    # Atomic decrement, so two workers never both take the last use.
    used = session.execute(
        sa.update(Fault)
        .where(Fault.name == name, Fault.remaining > 0)
        .values(remaining=Fault.remaining - 1)
    )
    if not used.rowcount:  # type: ignore[attr-defined]  # CursorResult has rowcount
        return None
    return fault.value
