"""Who may show portal pages in a frame: the portal itself and the registered EHRs.

An EHR launch may open the portal inside the EHR's own page (an iframe). The CSP
`frame-ancestors` directive lists exactly those EHRs' origins, derived from their FHIR base URLs.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Response
from sqlalchemy.orm import Session

from portal.models import EhrServer

# Same as the app-wide policy (portal.app.security_headers), plus frame-ancestors.
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


def allow_ehr_framing(response: Response, session: Session) -> Response:
    """Give `response` the portal's CSP with `frame-ancestors` for the registered EHRs."""
    response.headers["Content-Security-Policy"] = f"{BASE_CSP}; {frame_ancestors(session)}"
    return response
