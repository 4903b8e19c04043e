"""Who may show portal pages in a frame: the portal itself and the registered EHRs.

An EHR launch may open the portal inside the EHR's own page (an iframe). The CSP
`frame-ancestors` directive lists exactly those EHRs' origins, derived from their FHIR base URLs.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.models import EhrServer

# Every page's policy; `frame-ancestors` is added per registry (see `policy`).
BASE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'"
)


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an http(s) URL, else None."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{host}{port}"


def ehr_origins(session: Session) -> list[str]:
    """Origins of every registered EHR, sorted, each once."""
    bases = session.scalars(sa.select(EhrServer.fhir_base)).all()
    return sorted({o for o in (origin_of(b) for b in bases) if o})


def frame_ancestors(session: Session) -> str:
    """The CSP directive letting the portal and the registered EHRs frame a page."""
    return "frame-ancestors " + " ".join(["'self'", *ehr_origins(session)])


_cached: tuple[float, str] | None = None
POLICY_MAX_AGE = 30.0  # seconds a registry change may take to reach the header


def policy(session: Session) -> str:
    """The portal's CSP: same-origin everything, framed only by itself and registered EHRs."""
    global _cached
    now = time.monotonic()
    if _cached is None or _cached[0] < now:
        _cached = (now + POLICY_MAX_AGE, f"{BASE_CSP}; {frame_ancestors(session)}")
    return _cached[1]


def forget_policy() -> None:
    """Drop the cached policy (after the registry changed; tests)."""
    global _cached
    _cached = None
