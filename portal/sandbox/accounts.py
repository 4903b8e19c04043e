"""Patients' logins and registered apps of the sandbox EHR.

Passwords are argon2 hashes; client secrets are SHA-256 digests (models.secret_hash).
"""

from __future__ import annotations

import secrets
import unicodedata
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.orm import Session

from portal.sandbox.models import Client, FhirResource, PatientUser, secret_hash

CLIENT_TYPES = ("public", "confidential-symmetric", "confidential-asymmetric")

# What a client may ask for when it is registered without an explicit scope: everything a
# patient app can use. The patient still sees and approves each requested scope.
DEFAULT_CLIENT_SCOPE = (
    "openid fhirUser profile launch launch/patient launch/encounter "
    "offline_access online_access patient/*.cruds user/*.cruds"
)

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash of `password`."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches the stored argon2 hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def authenticate(session: Session, username: str, password: str) -> PatientUser | None:
    """The user with these credentials, or None; unknown names cost as much as wrong passwords."""
    user = session.scalar(sa.select(PatientUser).where(PatientUser.username == username.strip()))
    if user is None:
        verify_password(_dummy_hash(), password)  # same work, so timing reveals no usernames
        return None
    if not verify_password(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def register_client(
    session: Session,
    *,
    client_id: str,
    name: str,
    client_type: str,
    redirect_uris: list[str],
    launch_url: str | None = None,
    scope: str | None = None,
    secret: str | None = None,
    jwks: dict[str, Any] | None = None,
) -> Client:
    """Create or update a registered app. Only public keys and the secret's digest are kept."""
    if client_type not in CLIENT_TYPES:
        raise ValueError(f"client_type must be one of {', '.join(CLIENT_TYPES)}")
    if not client_id or not name:
        raise ValueError("client_id and name are required")
    if not redirect_uris:
        raise ValueError("at least one redirect URI is required")
    for uri in [*redirect_uris, *([launch_url] if launch_url else [])]:
        _check_absolute_url(uri)

    existing = session.get(Client, client_id)
    hashed = secret_hash(secret) if secret else None
    keys = public_keys_only(jwks) if jwks is not None else None
    if client_type == "confidential-symmetric":
        hashed = hashed or (existing.secret_hash if existing else None)
        if not hashed:
            raise ValueError("a confidential-symmetric client needs a secret")
    elif secret:
        raise ValueError(f"a {client_type} client has no secret")
    if client_type == "confidential-asymmetric":
        keys = keys or (existing.jwks if existing else None)
        if not keys:
            raise ValueError("a confidential-asymmetric client needs a JWKS")
    elif jwks:
        raise ValueError(f"a {client_type} client has no JWKS")

    client = existing or Client(client_id=client_id)
    client.name = name
    client.client_type = client_type
    client.redirect_uris = list(redirect_uris)
    client.launch_url = launch_url
    client.secret_hash = hashed
    client.jwks = keys
    if scope is not None:
        client.allowed_scope = " ".join(scope.split())
    elif not client.allowed_scope:
        client.allowed_scope = DEFAULT_CLIENT_SCOPE
    session.add(client)
    session.flush()
    return client


def public_keys_only(jwks: dict[str, Any]) -> dict[str, Any]:
    """The public half of every key of a JWKS; refuses an empty or malformed set."""
    try:
        key_set = KeySet.import_key_set(jwks)  # type: ignore[arg-type]  # a JWKS dict
    except (JoseError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"invalid JWKS: {error}") from error
    if not key_set.keys:
        raise ValueError("the JWKS has no keys")
    if any(key.key_type == "oct" for key in key_set.keys):
        raise ValueError("the JWKS must hold public keys (RSA or EC), not shared secrets")
    return {"keys": [key.as_dict(private=False) for key in key_set.keys]}


def _check_absolute_url(uri: str) -> None:
    parts = urlsplit(uri)
    if not parts.scheme or not (parts.netloc or parts.scheme not in ("http", "https")):
        raise ValueError(f"not an absolute URL: {uri!r}")
    if parts.fragment:
        raise ValueError(f"a redirect or launch URL has no fragment: {uri!r}")


def patient_display_name(patient: dict[str, Any]) -> str:
    """`Given Family` from the official (else first) name of a Patient resource."""
    names = patient.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    if name.get("text"):
        return str(name["text"])
    parts = [*name.get("given", []), name.get("family", "")]
    return " ".join(p for p in parts if p) or f"Patient {patient.get('id', '')}".strip()


def _ascii_letters(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in folded.lower() if "a" <= c <= "z")


def demo_username(session: Session, patient: dict[str, Any]) -> str:
    """The given name in lower-case ASCII letters, with a digit appended if already taken."""
    names = patient.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    given = (name.get("given") or [""])[0]
    base = _ascii_letters(given) or _ascii_letters(name.get("family", "")) or "patient"
    taken = set(
        session.scalars(
            sa.select(PatientUser.username).where(PatientUser.username.startswith(base))
        )
    )
    if base not in taken:
        return base
    n = 2
    while f"{base}{n}" in taken:
        n += 1
    return f"{base}{n}"


def demo_password(username: str) -> str:
    return f"{username}-demo"


def ensure_patient_user(
    session: Session,
    patient_resource: dict[str, Any],
    username: str,
    password: str,
    demo: bool = True,
) -> PatientUser:
    """The login `username` of this patient, created or updated to this password.

    A demo login keeps its password so the login page can list it.
    """
    if patient_resource.get("resourceType") != "Patient" or not patient_resource.get("id"):
        raise ValueError("a Patient resource with an id is required")
    patient_id = str(patient_resource["id"])
    username = username.strip()
    if not username or not password:
        raise ValueError("username and password are required")
    user = session.scalar(sa.select(PatientUser).where(PatientUser.username == username))
    if user is not None and user.patient_id != patient_id:
        raise ValueError(f"username {username!r} belongs to another patient")
    if user is None:
        user = PatientUser(username=username, patient_id=patient_id)
    user.display_name = patient_display_name(patient_resource)
    if not user.password_hash or not verify_password(user.password_hash, password):
        user.password_hash = hash_password(password)
    user.demo_password = password if demo else None
    session.add(user)
    session.flush()
    return user


def user_for_patient(session: Session, patient_resource: dict[str, Any]) -> PatientUser:
    """A login of this patient (demo logins first), creating a demo login if there is none."""
    user = session.scalar(
        sa.select(PatientUser)
        .where(PatientUser.patient_id == str(patient_resource["id"]))
        .order_by(PatientUser.demo_password.is_(None), PatientUser.id)
        .limit(1)
    )
    if user is not None:
        return user
    username = demo_username(session, patient_resource)
    return ensure_patient_user(session, patient_resource, username, demo_password(username))


def create_demo_users(session: Session) -> list[PatientUser]:
    """One demo login for every Patient in the store that has none; returns the new ones."""
    have = set(session.scalars(sa.select(PatientUser.patient_id)))
    created = []
    patients = session.scalars(
        sa.select(FhirResource)
        .where(FhirResource.resource_type == "Patient")
        .order_by(FhirResource.pk)
    )
    for row in patients:
        if row.resource_id in have:
            continue
        created.append(user_for_patient(session, row.content))
        have.add(row.resource_id)
    return created


def demo_accounts(session: Session) -> list[PatientUser]:
    """Logins whose password may be shown on the login page, by name."""
    return list(
        session.scalars(
            sa.select(PatientUser)
            .where(PatientUser.demo_password.is_not(None))
            .order_by(PatientUser.display_name, PatientUser.username)
        )
    )
