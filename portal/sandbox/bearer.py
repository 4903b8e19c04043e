"""Access-token checks for the FHIR API."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.sandbox.models import Token, secret_hash
from portal.sandbox.outcome import FhirError

_CHALLENGE = 'Bearer realm="fhir"'


def authenticate(session: Session, authorization: str | None) -> Token:
    """The live token named by an `Authorization: Bearer` header, or a 401 FhirError."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise FhirError(401, "Missing bearer token", {"WWW-Authenticate": _CHALLENGE})
    raw = authorization[7:].strip()
    token = session.scalar(sa.select(Token).where(Token.access_token_hash == secret_hash(raw)))
    if token is None or token.is_revoked() or token.is_expired():
        raise FhirError(
            401,
            "Invalid, expired or revoked access token",
            {"WWW-Authenticate": _CHALLENGE + ', error="invalid_token"'},
        )
    return token
