"""Injected faults as the FHIR data endpoints show them (see portal/sandbox/faults.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from portal.db import transaction
from portal.sandbox import faults
from portal.sandbox.models import Fault
from portal.sandbox.outcome import FhirError


@dataclass(frozen=True)
class SearchFaults:
    """Faults that change a search response rather than replace it."""

    malformed_resource: bool = False
    looping_next: bool = False


def inject(session: Session, factory: sessionmaker[Session], *, search: bool) -> SearchFaults:
    """Sleep, refuse (429/503) or report which search faults apply to this request.

    `session` (the request's) only looks whether any fault is on, the usual answer being no.
    Faults are used up in a transaction of their own: the request's session is rolled back
    on an error response, which would give a 429 its use back and make it last forever.
    """
    if session.scalar(sa.select(Fault.name).limit(1)) is None:
        return SearchFaults()
    with transaction(factory) as own:
        active = set(own.scalars(sa.select(Fault.name)))
        latency = _take(own, active, "latency_ms")
        unavailable = _take(own, active, "unavailable")
        rate_limit = None if unavailable is not None else _take(own, active, "rate_limit")
        passes = search and unavailable is None and rate_limit is None
        found = SearchFaults(
            malformed_resource=passes and _take(own, active, "malformed_resource") is not None,
            looping_next=passes and _take(own, active, "looping_next") is not None,
        )
    if latency:
        time.sleep(latency / 1000)
    if unavailable is not None:
        raise FhirError(
            503, "The server is temporarily unavailable", {"Retry-After": str(unavailable)}
        )
    if rate_limit is not None:
        raise FhirError(429, "Too many requests", {"Retry-After": str(rate_limit)})
    return found


def _take(session: Session, active: set[str], name: str) -> int | None:
    return faults.take(session, name) if name in active else None
