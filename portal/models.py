"""Portal tables shared across features.

Accounts, per-EHR connections and caregiver grants arrive with their features; the EHR
registry comes first because every launch starts by checking an `iss` against it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, JSONType, created_at, intpk, str255


class EhrServer(Base):
    """An EHR the portal is allowed to talk to; an `iss` not listed here is refused."""

    __tablename__ = "ehr_server"

    id: Mapped[intpk]
    name: Mapped[str255]
    fhir_base: Mapped[str] = mapped_column(sa.String(500), unique=True)
    client_id: Mapped[str255]
    # public | confidential-symmetric | confidential-asymmetric
    client_type: Mapped[str] = mapped_column(sa.String(40), default="public")
    # confidential-symmetric only; encrypted like the tokens
    client_secret_enc: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[created_at]
    updated_at: Mapped[datetime | None]


def states(kind: type[StrEnum], length: int = 20) -> sa.Enum:
    """A typed state column: stored as its value (a VARCHAR) under a CHECK constraint named
    after the enum (`syncstatus`), the same on SQLite and PostgreSQL."""
    return sa.Enum(
        kind,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=lambda members: [m.value for m in members],
    )


class UnitSystem(StrEnum):
    """The units a person reads weight, height, temperature and glucose in."""

    METRIC = "metric"  # kg, cm, °C, mmol/L
    US = "us"  # lb, in, °F, mg/dL


class Account(Base):
    """A person who signs in: a patient (and, later, a caregiver given shared access).

    An account made by an EHR launch has no email or password: it is reached through its
    EHR connection (the EHR's `patient` and `sub`), never through request parameters.
    """

    __tablename__ = "account"

    id: Mapped[intpk]
    email: Mapped[str | None] = mapped_column(sa.String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    display_name: Mapped[str] = mapped_column(sa.String(200), default="")
    created_at: Mapped[created_at]
    last_login_at: Mapped[datetime | None]
    # How the record is shown to this person (None: the portal's defaults; portal.accounts.shown).
    units: Mapped[UnitSystem | None] = mapped_column(states(UnitSystem, length=10))
    time_zone: Mapped[str | None] = mapped_column(sa.String(64))  # IANA, e.g. America/Chicago
    # The person chose the zone on the account page: a browser's zone at sign-in no longer
    # replaces it.
    time_zone_chosen: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    connections: Mapped[list[EhrConnection]] = relationship(
        back_populates="account", cascade="all, delete-orphan", order_by="EhrConnection.id"
    )


class PasswordReset(Base):
    """A single-use password reset token (stored as a digest)."""

    __tablename__ = "password_reset"

    id: Mapped[intpk]
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("account.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[created_at]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class EhrConnection(Base):
    """A source of one person's record: an authorised link to their record at one EHR, or
    (kind "self", no EHR) the entries the person makes themselves.

    Every records query goes by source, so the patient's own entries are read, merged and
    shared exactly like an EHR's. Tokens are encrypted with a key from the configuration
    (never stored in the database).
    """

    __tablename__ = "ehr_connection"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "ehr_server_id", "patient_id"),
        # One "self" source per person.
        sa.Index(
            "uq_ehr_connection_self",
            "account_id",
            unique=True,
            sqlite_where=sa.text("kind = 'self'"),
            postgresql_where=sa.text("kind = 'self'"),
        ),
    )

    id: Mapped[intpk]
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("account.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(10), default="ehr", server_default="ehr")
    ehr_server_id: Mapped[int | None] = mapped_column(sa.ForeignKey("ehr_server.id"))
    patient_id: Mapped[str] = mapped_column(sa.String(64))  # the token's `patient`
    fhir_user: Mapped[str | None] = mapped_column(sa.String(500))
    subject: Mapped[str | None] = mapped_column(sa.String(255))  # id_token `sub`
    # active | reconnect_needed | disconnected
    status: Mapped[str] = mapped_column(sa.String(30), default="active")
    requested_scope: Mapped[str] = mapped_column(sa.Text, default="")
    granted_scope: Mapped[str] = mapped_column(sa.Text, default="")
    access_token_enc: Mapped[str | None] = mapped_column(sa.Text)
    refresh_token_enc: Mapped[str | None] = mapped_column(sa.Text)
    token_expires_at: Mapped[datetime | None]
    # Single-flight refresh: whoever holds this lease refreshes; others wait and reload.
    refresh_lease_at: Mapped[datetime | None]  # when it was taken (portal.leases)
    need_patient_banner: Mapped[bool] = mapped_column(default=True)
    smart_style_url: Mapped[str | None] = mapped_column(sa.String(500))
    encounter_id: Mapped[str | None] = mapped_column(sa.String(64))
    # What the EHR had open at its latest launch ({"type", "id", "role"} each; see
    # portal.smart.oauth.launch_context); empty after a standalone connect.
    launch_context: Mapped[list[dict[str, str]]] = mapped_column(
        JSONType, default=list, server_default="[]"
    )
    created_at: Mapped[created_at]
    updated_at: Mapped[datetime | None]
    last_synced_at: Mapped[datetime | None]
    # Bumped whenever this connection's stored records change: prepared pages are keyed by it.
    data_version: Mapped[int] = mapped_column(default=0, server_default="0")

    account: Mapped[Account] = relationship(back_populates="connections")
    ehr: Mapped[EhrServer | None] = relationship(lazy="joined")

    @property
    def is_self(self) -> bool:
        return self.kind == "self"

    @property
    def source_name(self) -> str:
        """What the records pages call this source: the EHR's name, or "You"."""
        return self.ehr.name if self.ehr is not None else "You"

    @property
    def server(self) -> EhrServer:
        """The EHR of an EHR connection (code that talks to EHRs never sees "self")."""
        if self.ehr is None:
            raise ValueError(f"connection {self.id} is not an EHR connection")
        return self.ehr


class OAuthTransaction(Base):
    """An authorization request in flight: state, PKCE verifier and nonce, kept server-side.

    The browser holds only a random binding; `state` must match a row bound to that browser.
    """

    __tablename__ = "oauth_transaction"

    id: Mapped[intpk]
    state_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    browser_binding_hash: Mapped[str] = mapped_column(sa.String(64))
    ehr_server_id: Mapped[int] = mapped_column(sa.ForeignKey("ehr_server.id", ondelete="CASCADE"))
    account_id: Mapped[int | None] = mapped_column(sa.ForeignKey("account.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(20))  # ehr-launch | standalone
    launch: Mapped[str | None] = mapped_column(sa.String(500))
    code_verifier_enc: Mapped[str] = mapped_column(sa.Text)
    nonce: Mapped[str] = mapped_column(sa.String(64))
    redirect_uri: Mapped[str] = mapped_column(sa.String(500))
    requested_scope: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[created_at]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class SyncStatus(StrEnum):
    """Where a sync run stands (see SyncRun)."""

    QUEUED = "queued"  # waiting for a worker
    RUNNING = "running"  # a worker holds its lease (heartbeat_at, lease_owner)
    COMPLETE = "complete"  # every search answered
    INCOMPLETE = "incomplete"  # ended with some of it: what arrived is kept
    FAILED = "failed"  # ended with nothing new


class SyncRun(Base):
    """One fetch of a connection's record. State lives here, so any worker can show or resume it."""

    __tablename__ = "sync_run"
    __table_args__ = (sa.Index("ix_sync_run_connection_status", "connection_id", "status"),)

    id: Mapped[intpk]
    connection_id: Mapped[int] = mapped_column(
        sa.ForeignKey("ehr_connection.id", ondelete="CASCADE")
    )
    status: Mapped[SyncStatus] = mapped_column(states(SyncStatus), default=SyncStatus.QUEUED)
    created_at: Mapped[created_at]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(sa.String(64))
    # category -> {"fetched": n, "done": bool, "error": str | None}
    progress: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    since: Mapped[datetime | None]  # _lastUpdated lower bound (re-sync fetches only changes)
    error: Mapped[str | None] = mapped_column(sa.String(500))  # plain words, no record data


class FhirRecord(Base):
    """A resource as received from an EHR, with the columns the records pages query by."""

    __tablename__ = "fhir_record"
    __table_args__ = (
        sa.UniqueConstraint("connection_id", "resource_type", "resource_id"),
        sa.Index("ix_fhir_record_category", "connection_id", "category", "effective_at"),
        sa.Index("ix_fhir_record_encounter", "connection_id", "encounter_ref"),
    )

    id: Mapped[intpk]
    connection_id: Mapped[int] = mapped_column(
        sa.ForeignKey("ehr_connection.id", ondelete="CASCADE")
    )
    resource_type: Mapped[str] = mapped_column(sa.String(64))
    resource_id: Mapped[str] = mapped_column(sa.String(64))
    version_id: Mapped[str | None] = mapped_column(sa.String(64))
    last_updated: Mapped[datetime | None]  # meta.lastUpdated as sent
    fetched_at: Mapped[datetime]
    category: Mapped[str] = mapped_column(sa.String(40))  # see portal.phr.classify
    status: Mapped[str | None] = mapped_column(sa.String(40))
    code_system: Mapped[str | None] = mapped_column(sa.String(255))
    code: Mapped[str | None] = mapped_column(sa.String(100))
    display: Mapped[str | None] = mapped_column(sa.String(500))
    effective_at: Mapped[datetime | None]
    # The visit it was made at (`encounter.reference` as sent): a visit finds its records.
    encounter_ref: Mapped[str | None] = mapped_column(sa.String(255))
    raw: Mapped[dict[str, Any]] = mapped_column(JSONType)


class QuarantinedResource(Base):
    """A malformed resource an EHR sent: kept aside and reported, never shown as a record."""

    __tablename__ = "quarantined_resource"

    id: Mapped[intpk]
    connection_id: Mapped[int] = mapped_column(
        sa.ForeignKey("ehr_connection.id", ondelete="CASCADE")
    )
    sync_run_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("sync_run.id", ondelete="SET NULL")
    )
    resource_type: Mapped[str | None] = mapped_column(sa.String(64))
    resource_id: Mapped[str | None] = mapped_column(sa.String(64))
    reason: Mapped[str] = mapped_column(sa.String(500))
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    fetched_at: Mapped[datetime]


class FactList(Base):
    """One section of a record folded into facts (see portal.phr.facts), for one version of
    everything the folding depends on; its facts are `FactItem` rows, in order."""

    __tablename__ = "fact_list"
    __table_args__ = (sa.UniqueConstraint("account_id", "name", "digest"),)

    id: Mapped[intpk]
    account_id: Mapped[int] = mapped_column(
        sa.ForeignKey("account.id", ondelete="CASCADE"), index=True
    )  # whose record
    name: Mapped[str] = mapped_column(sa.String(40))  # the folding (`Spec.name`)
    digest: Mapped[str] = mapped_column(sa.String(64))
    total: Mapped[int]
    created_at: Mapped[created_at]


class FactItem(Base):
    """One fact of a `FactList`: the ids of the records stating it (the shown one first),
    the records kept apart from it, and what its page lists it by."""

    __tablename__ = "fact_item"

    list_id: Mapped[int] = mapped_column(
        sa.ForeignKey("fact_list.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    records: Mapped[list[int]] = mapped_column(JSONType)
    apart: Mapped[list[int] | None] = mapped_column(JSONType)
    data: Mapped[Any | None] = mapped_column(JSONType)


class PageSnapshot(Base):
    """A records page part already rendered for one viewer of one record (see portal.phr.snapshots).

    Health data like the records it comes from; found only by a key that includes the viewer,
    what they may see and the record's data version, so a change of any of them misses.
    """

    __tablename__ = "page_snapshot"

    id: Mapped[intpk]
    account_id: Mapped[int] = mapped_column(
        sa.ForeignKey("account.id", ondelete="CASCADE"), index=True
    )  # whose record
    key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    version: Mapped[str] = mapped_column(sa.String(64))
    title: Mapped[str] = mapped_column(sa.String(300))
    banner: Mapped[str | None] = mapped_column(sa.Text)
    body: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[created_at]


class EntryRevision(Base):
    """An earlier (or the first) version of an entry the patient made: nothing is lost.

    The entry itself is the FhirRecord of the person's "self" source; each save, delete and
    undo adds a revision with the resource as it was after that action.
    """

    __tablename__ = "entry_revision"
    __table_args__ = (sa.UniqueConstraint("record_id", "version"),)

    id: Mapped[intpk]
    record_id: Mapped[int] = mapped_column(sa.ForeignKey("fhir_record.id", ondelete="CASCADE"))
    version: Mapped[int]
    action: Mapped[str] = mapped_column(sa.String(20))  # created | edited | deleted | restored
    raw: Mapped[dict[str, Any]] = mapped_column(JSONType)
    changed_at: Mapped[datetime]
    changed_by: Mapped[int | None] = mapped_column(sa.ForeignKey("account.id", ondelete="SET NULL"))


class MergeSplit(Base):
    """Two records the patient said are not the same fact: never folded together again."""

    __tablename__ = "merge_split"
    __table_args__ = (sa.UniqueConstraint("account_id", "record_a", "record_b"),)

    id: Mapped[intpk]
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("account.id", ondelete="CASCADE"))
    record_a: Mapped[int] = mapped_column(sa.ForeignKey("fhir_record.id", ondelete="CASCADE"))
    record_b: Mapped[int] = mapped_column(sa.ForeignKey("fhir_record.id", ondelete="CASCADE"))
    created_at: Mapped[created_at]


class WriteBackState(StrEnum):
    """Where an entry sent to a clinic stands (see WriteBack)."""

    QUEUED = "queued"  # to be sent (a job is on its way)
    SENDING = "sending"  # claimed by a worker, the POST under way
    SENT = "sent"  # the clinic has it (its id in `server_id`)
    FAILED = "failed"  # not sent yet: tried again from `next_attempt_at`
    GAVE_UP = "gave_up"  # refused for good, or too many tries: the patient may try again


class WriteBack(Base):
    """One of the patient's entries sent (or to be sent) to one of their clinics.

    States: queued -> sent, or failed (retried from `next_attempt_at`) -> ... -> gave_up when
    the clinic refuses it for good. The POST is conditional on the entry's identifier, so a
    retry never makes a second copy at the clinic.
    """

    __tablename__ = "write_back"
    __table_args__ = (
        sa.UniqueConstraint("record_id", "connection_id"),
        sa.Index("ix_write_back_state_next", "state", "next_attempt_at"),
    )

    id: Mapped[intpk]
    record_id: Mapped[int] = mapped_column(sa.ForeignKey("fhir_record.id", ondelete="CASCADE"))
    connection_id: Mapped[int] = mapped_column(
        sa.ForeignKey("ehr_connection.id", ondelete="CASCADE")
    )
    state: Mapped[WriteBackState] = mapped_column(
        states(WriteBackState), default=WriteBackState.QUEUED
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    server_id: Mapped[str | None] = mapped_column(sa.String(64))  # the clinic's id for it
    version_sent: Mapped[str | None] = mapped_column(sa.String(64))  # our versionId it had
    error: Mapped[str | None] = mapped_column(sa.String(500))  # plain words, no record data
    created_at: Mapped[created_at]
    updated_at: Mapped[datetime | None]


class SessionKind(StrEnum):
    """What a browser session may do (see portal.sessions)."""

    ANONYMOUS = "anonymous"  # nobody signed in (yet): CSRF secret, OAuth binding, messages
    FULL = "full"  # signed in with the account's own credentials: the whole account
    LAUNCH = "launch"  # begun by an EHR launch: that one clinic's record, nothing else


class BrowserSession(Base):
    """A browser's server-side session; the cookie holds only a random id, stored as a digest.

    The embedded store (Redis in production keeps the same fields; see portal.sessions.store).
    """

    __tablename__ = "browser_session"
    __table_args__ = (
        sa.Index("ix_browser_session_account", "account_id"),
        sa.Index("ix_browser_session_ends", "idle_until"),
    )

    id: Mapped[intpk]
    sid_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    kind: Mapped[SessionKind] = mapped_column(states(SessionKind))
    account_id: Mapped[int | None] = mapped_column(sa.ForeignKey("account.id", ondelete="CASCADE"))
    # A launch session's clinic: the one connection it may read.
    connection_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("ehr_connection.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    idle_until: Mapped[datetime]  # last activity + the idle timeout
    expires_at: Mapped[datetime]  # the absolute end, from sign-in
    user_agent: Mapped[str] = mapped_column(sa.String(300), default="")
    data: Mapped[str] = mapped_column(sa.Text, default="")  # Flask's tagged JSON
