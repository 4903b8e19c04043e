"""The EHR registry: which EHRs the portal may talk to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
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


def register(session: Session, entry: Mapping[str, Any], environ: Mapping[str, str]) -> EhrServer:
    """Add or update one EHR from a config entry (the CLI's options or a registry file).

    Keys: name, fhir_base, client_id, client_type (default public), client_secret_env (the
    name of an environment variable holding a confidential-symmetric client's secret, so
    secrets stay out of files and shell history).
    """
    from portal.smart.tokens import set_client_secret

    unknown = set(entry) - {"name", "fhir_base", "client_id", "client_type", "client_secret_env"}
    if unknown:
        raise RegistryError(f"unknown keys: {', '.join(sorted(unknown))}")
    client_type = str(entry.get("client_type") or "public")
    secret_env = entry.get("client_secret_env")
    secret = environ.get(str(secret_env)) if secret_env else None
    if client_type == "confidential-symmetric" and not secret:
        raise RegistryError(
            "a confidential-symmetric client needs client_secret_env naming a set variable"
        )
    ehr = upsert_ehr(
        session,
        name=str(entry.get("name") or ""),
        fhir_base=str(entry.get("fhir_base") or ""),
        client_id=str(entry.get("client_id") or ""),
        client_type=client_type,
    )
    if secret:
        set_client_secret(ehr, secret)
    return ehr
