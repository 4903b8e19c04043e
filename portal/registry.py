"""The EHR registry: which EHRs the portal may talk to."""

from __future__ import annotations

from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import EhrServer

CLIENT_TYPES = ("public", "confidential-symmetric", "confidential-asymmetric")


class RegistryError(ValueError):
    """A registry entry that cannot be accepted; the message says why."""


def normalise_base(url: str) -> str:
    """FHIR base URLs are compared without a trailing slash; only http(s) URLs are accepted."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RegistryError(f"not an http(s) URL: {url!r}")
    if parts.query or parts.fragment:
        raise RegistryError("a FHIR base URL has no query or fragment")
    return url


def upsert_ehr(
    session: Session, *, name: str, fhir_base: str, client_id: str, client_type: str = "public"
) -> EhrServer:
    """Add an EHR, or update the one with the same FHIR base."""
    if client_type not in CLIENT_TYPES:
        raise RegistryError(f"client type must be one of {', '.join(CLIENT_TYPES)}")
    if not name.strip() or not client_id.strip():
        raise RegistryError("name and client id are required")
    base = normalise_base(fhir_base)
    ehr = session.scalar(sa.select(EhrServer).where(EhrServer.fhir_base == base))
    if ehr is None:
        ehr = EhrServer(fhir_base=base)
        session.add(ehr)
    else:
        ehr.updated_at = utcnow()
    ehr.name, ehr.client_id, ehr.client_type = name.strip(), client_id.strip(), client_type
    session.flush()
    return ehr


def find_ehr(session: Session, iss: str) -> EhrServer | None:
    """The registered EHR whose FHIR base is exactly `iss` (no request goes to unknown servers)."""
    try:
        base = normalise_base(iss)
    except RegistryError:
        return None
    return session.scalar(sa.select(EhrServer).where(EhrServer.fhir_base == base))
