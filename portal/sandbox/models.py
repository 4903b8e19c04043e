"""The sandbox EHR's own tables: OAuth clients, grants, tokens, patients' logins, FHIR store."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from portal.db import NAMING_CONVENTION, JSONType, UTCDateTime, utcnow


class SandboxBase(DeclarativeBase):
    """Separate metadata: the sandbox is another system with its own database."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime(), dict[str, Any]: JSONType}


def secret_hash(value: str) -> str:
    """Tokens and client secrets are stored as SHA-256 digests, never as given."""
    return hashlib.sha256(value.encode()).hexdigest()


class PatientUser(SandboxBase):
    """A patient's login at this EHR's patient portal."""

    __tablename__ = "sb_patient_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    patient_id: Mapped[str] = mapped_column(sa.String(64))
    display_name: Mapped[str] = mapped_column(sa.String(200))
    # Only demo accounts keep their password, so the login page can list it.
    demo_password: Mapped[str | None] = mapped_column(sa.String(80))

    def get_user_id(self) -> int:
        return self.id

    @property
    def fhir_user(self) -> str:
        return f"Patient/{self.patient_id}"

    @property
    def subject(self) -> str:
        """The id_token `sub` of this login."""
        return str(self.id)

    @property
    def record_owner(self) -> PatientUser:
        return self

    @property
    def practitioner_id(self) -> None:
        return None


@dataclass(frozen=True)
class Clinician:
    """A clinician working in the EHR with a patient's chart open (the launch simulator's
    clinician role; the sandbox has no clinician logins). Authorizes like a patient login
    does, but the id_token names the clinician's Practitioner; codes and tokens keep the
    chart's patient as record owner."""

    practitioner_id: str
    display_name: str
    chart: PatientUser  # the login of the patient whose chart is open

    def get_user_id(self) -> int:
        return self.chart.id

    @property
    def fhir_user(self) -> str:
        return f"Practitioner/{self.practitioner_id}"

    @property
    def subject(self) -> str:
        return f"practitioner-{self.practitioner_id}"

    @property
    def record_owner(self) -> PatientUser:
        return self.chart

    @property
    def patient_id(self) -> str:
        return self.chart.patient_id


class Client(SandboxBase):
    """A registered SMART app (authlib ClientMixin protocol)."""

    __tablename__ = "sb_client"

    client_id: Mapped[str] = mapped_column(sa.String(120), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    # public | confidential-symmetric | confidential-asymmetric
    client_type: Mapped[str] = mapped_column(sa.String(40))
    secret_hash: Mapped[str | None] = mapped_column(sa.String(64))
    redirect_uris: Mapped[list[str]] = mapped_column(JSONType, default=list)
    launch_url: Mapped[str | None] = mapped_column(sa.String(500))
    allowed_scope: Mapped[str] = mapped_column(sa.Text, default="")
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def token_endpoint_auth_method(self) -> str:
        return {
            "public": "none",
            "confidential-symmetric": "client_secret_basic",
            "confidential-asymmetric": "client_assertion_jwt",
        }[self.client_type]

    # --- authlib ClientMixin ---
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # SMART apps must always send redirect_uri; no default is assumed.
        return None

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(self.allowed_scope.split())
        return " ".join(s for s in scope.split() if s in allowed or _pattern_allows(allowed, s))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact string match, nothing looser

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.secret_hash:
            return False
        return hmac.compare_digest(self.secret_hash, secret_hash(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


def _pattern_allows(allowed: set[str], scope: str) -> bool:
    """Clients registered for `patient/*.*`-style wildcards may ask for any narrower scope."""
    from portal.sandbox.scopes import covers

    return any(covers(a, scope) for a in allowed)


class LaunchContext(SandboxBase):
    """An EHR launch created by the launch simulator, resolved at /authorize via `launch`."""

    __tablename__ = "sb_launch"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(sa.ForeignKey("sb_client.client_id"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("sb_patient_user.id"))
    patient_id: Mapped[str] = mapped_column(sa.String(64))
    encounter_id: Mapped[str | None] = mapped_column(sa.String(64))
    need_patient_banner: Mapped[bool] = mapped_column(default=True)
    smart_style_url: Mapped[str | None] = mapped_column(sa.String(500))
    # Who launched: a clinician (their Practitioner id) from the patient's chart, or (None)
    # the patient `user_id` from the patient portal.
    practitioner_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class AuthorizationCode(SandboxBase):
    """A single-use code; deleted when exchanged (authlib AuthorizationCodeMixin protocol)."""

    __tablename__ = "sb_authorization_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    client_id: Mapped[str] = mapped_column(sa.ForeignKey("sb_client.client_id"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("sb_patient_user.id"))
    redirect_uri: Mapped[str] = mapped_column(sa.String(500))
    scope: Mapped[str] = mapped_column(sa.Text)
    nonce: Mapped[str | None] = mapped_column(sa.String(255))
    code_challenge: Mapped[str] = mapped_column(sa.String(128))
    code_challenge_method: Mapped[str] = mapped_column(sa.String(10))
    # Launch context carried into the token response.
    patient_id: Mapped[str | None] = mapped_column(sa.String(64))
    encounter_id: Mapped[str | None] = mapped_column(sa.String(64))
    need_patient_banner: Mapped[bool] = mapped_column(default=True)
    smart_style_url: Mapped[str | None] = mapped_column(sa.String(500))
    practitioner_id: Mapped[str | None] = mapped_column(sa.String(64))  # a clinician's grant
    auth_time: Mapped[int] = mapped_column(default=lambda: int(time.time()))
    expires_at: Mapped[datetime]

    user: Mapped[PatientUser] = relationship(lazy="joined")

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class Token(SandboxBase):
    """An issued access token (and refresh token), stored as digests (authlib TokenMixin)."""

    __tablename__ = "sb_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(sa.ForeignKey("sb_client.client_id"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("sb_patient_user.id"))
    access_token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    refresh_token_hash: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    scope: Mapped[str] = mapped_column(sa.Text)
    issued_at: Mapped[int] = mapped_column(sa.BigInteger)
    expires_in: Mapped[int]
    access_revoked: Mapped[bool] = mapped_column(default=False)
    refresh_revoked: Mapped[bool] = mapped_column(default=False)
    patient_id: Mapped[str | None] = mapped_column(sa.String(64))
    encounter_id: Mapped[str | None] = mapped_column(sa.String(64))
    need_patient_banner: Mapped[bool] = mapped_column(default=True)
    smart_style_url: Mapped[str | None] = mapped_column(sa.String(500))
    practitioner_id: Mapped[str | None] = mapped_column(sa.String(64))  # a clinician's grant

    user: Mapped[PatientUser] = relationship(lazy="joined")

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.access_revoked

    def get_user(self) -> PatientUser:
        return self.user

    def get_client(self) -> Client:
        return sa.orm.object_session(self).get(Client, self.client_id)  # type: ignore[union-attr,return-value]  # a loaded token always has a session


class UsedJti(SandboxBase):
    """Client-assertion `jti`s already seen, so a replayed private_key_jwt is refused."""

    __tablename__ = "sb_used_jti"

    client_id: Mapped[str] = mapped_column(sa.String(120), primary_key=True)
    jti: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    expires_at: Mapped[datetime]


class FhirResource(SandboxBase):
    """The current version of a FHIR resource, with the columns searches filter on."""

    __tablename__ = "sb_resource"
    __table_args__ = (
        sa.UniqueConstraint("resource_type", "resource_id"),
        sa.Index("ix_sb_resource_type_patient", "resource_type", "patient_id", "last_updated"),
    )

    pk: Mapped[int] = mapped_column(primary_key=True)
    resource_type: Mapped[str] = mapped_column(sa.String(64))
    resource_id: Mapped[str] = mapped_column(sa.String(64))
    version_id: Mapped[int] = mapped_column(default=1)
    last_updated: Mapped[datetime]
    patient_id: Mapped[str | None] = mapped_column(sa.String(64))
    date_start: Mapped[datetime | None]
    date_end: Mapped[datetime | None]
    content: Mapped[dict[str, Any]] = mapped_column(JSONType)

    tokens: Mapped[list[FhirToken]] = relationship(
        cascade="all, delete-orphan", back_populates="resource"
    )


class FhirToken(SandboxBase):
    """One token-search value of a resource (category, code, status, intent, ...)."""

    __tablename__ = "sb_resource_token"
    __table_args__ = (
        sa.Index("ix_sb_resource_token_lookup", "param", "code", "resource_pk"),
        sa.Index("ix_sb_resource_token_resource", "resource_pk"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_pk: Mapped[int] = mapped_column(sa.ForeignKey("sb_resource.pk", ondelete="CASCADE"))
    param: Mapped[str] = mapped_column(sa.String(40))
    system: Mapped[str | None] = mapped_column(sa.String(255))
    code: Mapped[str] = mapped_column(sa.String(255))

    resource: Mapped[FhirResource] = relationship(back_populates="tokens")


class FhirHistory(SandboxBase):
    """Every version of every resource, for vread."""

    __tablename__ = "sb_resource_history"

    resource_type: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    resource_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(primary_key=True)
    content: Mapped[dict[str, Any]] = mapped_column(JSONType)


class Fault(SandboxBase):
    """An injected fault (tests and demos). `remaining` None means until cleared."""

    __tablename__ = "sb_fault"

    name: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    value: Mapped[int] = mapped_column(default=0)
    remaining: Mapped[int | None]
