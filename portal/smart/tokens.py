"""The token store: EHR connections with encrypted tokens, refresh, disconnect.

Refresh is single-flight per connection across threads and processes: whoever takes the
connection's refresh lease (portal.leases: an atomic UPDATE ... WHERE the lease has lapsed)
refreshes; the others wait and re-read. A rotated refresh token replaces the old one in the
same UPDATE that checks the old one is still there, so a refresh token is never used twice.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from portal.db import transaction, utcnow
from portal.leases import Lease
from portal.models import Account, EhrConnection, EhrServer, OAuthTransaction
from portal.smart.crypto import TokenKeyError
from portal.smart.errors import (
    EhrUnavailable,
    IdentityMissing,
    NotConnected,
    ReconnectNeeded,
    SmartError,
    Step,
    TokenError,
)
from portal.smart.oauth import LaunchResult, expiry, refresh_grant, revoke
from portal.smart.settings import SmartSettings, resolve

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.05


def set_client_secret(
    ehr: EhrServer, secret: str | None, *, settings: SmartSettings | None = None
) -> None:
    """Store a confidential-symmetric client secret, encrypted like the tokens."""
    ehr.client_secret_enc = resolve(settings).cipher.encrypt_optional(secret)


def rotate_encryption(session: Session, *, settings: SmartSettings | None = None) -> int:
    """Re-encrypt every stored secret with the first configured key (after adding a new key
    in front of TOKEN_KEYS); the old key can be dropped afterwards. Returns how many."""
    cipher = resolve(settings).cipher
    count = 0
    for model, columns in (
        (EhrConnection, ("access_token_enc", "refresh_token_enc")),
        (EhrServer, ("client_secret_enc",)),
        (OAuthTransaction, ("code_verifier_enc",)),
    ):
        for row in session.scalars(sa.select(model)):
            for column in columns:
                value = getattr(row, column)
                if value:
                    setattr(row, column, cipher.rotate(value))
                    count += 1
    session.flush()
    return count


# --- after a launch -----------------------------------------------------------------------------


def find_or_create_account_for_launch(
    session: Session, ehr: EhrServer, result: LaunchResult
) -> Account:
    """The account of an EHR launch: the one already connected as this (EHR, patient, sub).

    Identity comes only from the token response and the validated id_token.
    """
    if result.ehr_id != ehr.id:
        raise TokenError("launch result belongs to another EHR")
    if not result.sub:
        raise IdentityMissing("EHR launch without an id_token sub")
    account = session.scalar(
        sa.select(Account)
        .join(EhrConnection, EhrConnection.account_id == Account.id)
        .where(
            EhrConnection.ehr_server_id == ehr.id,
            EhrConnection.patient_id == result.patient,
            EhrConnection.subject == result.sub,
        )
        .order_by(EhrConnection.id)
        .limit(1)
    )
    if account is None:
        account = Account(display_name="")
        session.add(account)
        session.flush()
    return account


def connect(
    session: Session,
    result: LaunchResult,
    account: Account,
    *,
    settings: SmartSettings | None = None,
) -> EhrConnection:
    """Create or renew the account's connection to this patient at this EHR (status active)."""
    cipher = resolve(settings).cipher
    connection = session.scalar(
        sa.select(EhrConnection).where(
            EhrConnection.account_id == account.id,
            EhrConnection.ehr_server_id == result.ehr_id,
            EhrConnection.patient_id == result.patient,
        )
    )
    now = utcnow()
    if connection is None:
        connection = EhrConnection(
            account_id=account.id, ehr_server_id=result.ehr_id, patient_id=result.patient
        )
        session.add(connection)
    # updated_at is when the tokens were stored: with token_expires_at it gives the access
    # token's lifetime, which sets how early it is refreshed (refresh_at).
    connection.updated_at = now
    connection.fhir_user = result.fhir_user
    connection.subject = result.sub
    connection.status = "active"
    connection.requested_scope = result.requested_scope
    connection.granted_scope = result.granted_scope
    connection.access_token_enc = cipher.encrypt(result.access_token)
    connection.refresh_token_enc = cipher.encrypt_optional(result.refresh_token)
    connection.token_expires_at = result.expires_at
    connection.refresh_lease_at = None
    connection.need_patient_banner = result.need_patient_banner
    connection.smart_style_url = result.smart_style_url
    connection.encounter_id = result.encounter
    connection.launch_context = [item.as_json() for item in result.context]
    session.flush()
    log.info("connection %s active (EHR %s)", connection.id, result.ehr_id)
    return connection


# --- a valid access token -----------------------------------------------------------------------


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: datetime | None
    refresh_at: datetime | None = None  # when it is due for a refresh (None: not before a 401)

    def __repr__(self) -> str:
        return f"AccessToken(expires_at={self.expires_at!r})"


def refresh_at(
    expires_at: datetime | None, issued_at: datetime | None, settings: SmartSettings
) -> datetime | None:
    """When an access token is due for a refresh: `refresh_margin` before it expires, or a
    quarter of its lifetime when that is shorter, so a token just received is always used
    first (a 60-second token is refreshed after 45 seconds, not at once)."""
    if expires_at is None:
        return None  # the EHR did not say; a 401 will tell
    margin = timedelta(seconds=settings.refresh_margin)
    if issued_at is not None and issued_at < expires_at:
        margin = min(margin, (expires_at - issued_at) / 4)
    return expires_at - margin


def _refresh_at(conn: EhrConnection, settings: SmartSettings) -> datetime | None:
    # connect() and a refresh set updated_at when they store the tokens.
    return refresh_at(conn.token_expires_at, conn.updated_at or conn.created_at, settings)


def access_token(
    session_factory: sessionmaker[Session],
    connection_id: int,
    *,
    stale: str | None = None,
    settings: SmartSettings | None = None,
) -> str:
    """A valid access token of the connection, refreshed first when it expires soon.

    `stale`: a token the EHR just refused (401); it is refreshed unless another worker
    already replaced it.
    """
    return current_token(session_factory, connection_id, stale=stale, settings=settings).value


def current_token(
    session_factory: sessionmaker[Session],
    connection_id: int,
    *,
    stale: str | None = None,
    settings: SmartSettings | None = None,
) -> AccessToken:
    """Like access_token, with the expiry."""
    settings = resolve(settings)
    cipher = settings.cipher
    deadline = time.monotonic() + settings.refresh_lease + settings.http_timeout
    first_seen: str | None = None
    while True:
        claimed = usable = False
        with transaction(session_factory) as session:
            conn = _load(session, connection_id)
            token = cipher.decrypt(conn.access_token_enc) if conn.access_token_enc else None
            expires_at = conn.token_expires_at
            due = _refresh_at(conn, settings)
            fresh = token is not None and token != stale
            # Another worker refreshed while we waited: its token is ours too while it lasts
            # (refreshing again would only spend the new refresh token for nothing).
            replaced = first_seen is not None and token != first_seen
            first_seen = first_seen if first_seen is not None else (token or "")
            if fresh and (replaced or not _due(due)) and not _expired(expires_at):
                usable = True
            elif conn.refresh_token_enc is None:
                # No refresh token: use the access token while it lasts, then reconnect.
                usable = fresh and not _expired(expires_at)
                if not usable:
                    _mark_reconnect(session, conn, "no refresh token and the access token expired")
            else:
                claimed = take_refresh_lease(
                    session, connection_id, conn.refresh_token_enc, settings
                )
            seen_refresh = conn.refresh_token_enc
            ehr = conn.server
        if usable:
            assert token is not None
            return AccessToken(token, expires_at, due)
        if seen_refresh is None:
            raise ReconnectNeeded(f"connection {connection_id} has no usable token")
        if claimed:
            return _refresh(session_factory, connection_id, ehr, seen_refresh, settings)
        if time.monotonic() > deadline:
            raise EhrUnavailable(f"refresh of connection {connection_id} did not finish in time")
        time.sleep(POLL_INTERVAL)  # another worker is refreshing: wait, then re-read


def _load(session: Session, connection_id: int) -> EhrConnection:
    conn = session.get(EhrConnection, connection_id)
    if conn is None or conn.status == "disconnected":
        raise NotConnected(f"connection {connection_id} is disconnected")
    if conn.status == "reconnect_needed":
        raise ReconnectNeeded(f"connection {connection_id} needs reconnecting")
    return conn


def _due(refresh_at: datetime | None) -> bool:
    return refresh_at is not None and refresh_at <= utcnow()


def _expired(expires_at: datetime | None) -> bool:
    return expires_at is not None and expires_at <= utcnow()


def _lease(settings: SmartSettings) -> Lease:
    """A connection's refresh lease: one refresh at a time spends the refresh token."""
    return Lease(EhrConnection.refresh_lease_at, settings.refresh_lease)


def take_refresh_lease(
    session: Session, connection_id: int, seen_refresh: str, settings: SmartSettings
) -> bool:
    """Take the refresh lease, only if the refresh token is still the one we read: a worker
    that read the row just before another rotated it (and ended the lease) would spend an
    already used refresh token."""
    return _lease(settings).take(
        session,
        EhrConnection.id == connection_id,
        EhrConnection.status == "active",
        EhrConnection.refresh_token_enc == seen_refresh,
    )


def _refresh(
    session_factory: sessionmaker[Session],
    connection_id: int,
    ehr: EhrServer,
    seen_refresh: str,
    settings: SmartSettings,
) -> AccessToken:
    """Holding the lease: spend the refresh token once and store what replaces it."""
    cipher = settings.cipher
    try:
        refresh_token = cipher.decrypt(seen_refresh)
        token = refresh_grant(ehr, refresh_token, settings=settings)
    except SmartError as exc:
        # What the clinic's IT team needs: step, OAuth error code, HTTP status, EHR.
        log.warning("refresh of connection %s failed: %s", connection_id, exc.log_fields())
        if exc.oauth_error == "invalid_grant":
            with transaction(session_factory) as session:
                conn = session.get(EhrConnection, connection_id)
                if conn is not None and conn.refresh_token_enc == seen_refresh:
                    _mark_reconnect(session, conn, "the EHR refused the refresh token")
            raise ReconnectNeeded(
                f"connection {connection_id}: refresh refused",
                step=Step.REFRESH,
                oauth_error=exc.oauth_error,
                http_status=exc.http_status,
            ).at(ehr.id, ehr.name) from None
        _release(session_factory, connection_id, settings)
        raise
    except (httpx.HTTPError, ValueError, TokenKeyError):
        _release(session_factory, connection_id, settings)
        raise EhrUnavailable(
            f"refresh of connection {connection_id} failed", step=Step.REFRESH
        ) from None
    except BaseException:
        _release(session_factory, connection_id, settings)
        raise
    return _store_refreshed(session_factory, connection_id, seen_refresh, token, settings)


def _store_refreshed(
    session_factory: sessionmaker[Session],
    connection_id: int,
    seen_refresh: str,
    token: dict[str, Any],
    settings: SmartSettings,
) -> AccessToken:
    cipher = settings.cipher
    new_refresh = token.get("refresh_token")
    now = utcnow()
    values: dict[str, Any] = {
        "access_token_enc": cipher.encrypt(token["access_token"]),
        "token_expires_at": expiry(token, now),
        "refresh_lease_at": None,
        "updated_at": now,  # with token_expires_at: the new token's lifetime (refresh_at)
    }
    if isinstance(new_refresh, str) and new_refresh:
        values["refresh_token_enc"] = cipher.encrypt(new_refresh)
    if isinstance(token.get("scope"), str) and token["scope"].strip():
        values["granted_scope"] = token["scope"]
    with transaction(session_factory) as session:
        conn = session.get(EhrConnection, connection_id)
        patient = token.get("patient")
        wrong_patient = conn is not None and patient is not None and patient != conn.patient_id
        if conn is not None and wrong_patient:
            _mark_reconnect(session, conn, "refresh answered for another patient")
            stored = 0
        else:
            stored = session.execute(
                sa.update(EhrConnection)
                .where(
                    EhrConnection.id == connection_id,
                    EhrConnection.refresh_token_enc == seen_refresh,
                    EhrConnection.status == "active",
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]  # CursorResult has rowcount
    if wrong_patient:
        raise ReconnectNeeded(f"connection {connection_id}: refresh named another patient")
    if stored != 1:
        raise NotConnected(f"connection {connection_id} changed during refresh")
    log.info("connection %s refreshed", connection_id)
    expires_at = values["token_expires_at"]
    return AccessToken(token["access_token"], expires_at, refresh_at(expires_at, now, settings))


def _release(
    session_factory: sessionmaker[Session], connection_id: int, settings: SmartSettings
) -> None:
    with transaction(session_factory) as session:
        _lease(settings).end(session, EhrConnection.id == connection_id)


def _mark_reconnect(session: Session, conn: EhrConnection, why: str) -> None:
    """The grant is gone: ask the patient to reconnect; every stored record stays."""
    conn.status = "reconnect_needed"
    conn.access_token_enc = None
    conn.refresh_token_enc = None
    conn.token_expires_at = None
    conn.refresh_lease_at = None
    conn.updated_at = utcnow()
    log.warning("connection %s needs reconnecting: %s", conn.id, why)


class TokenSource:
    """One connection's access token shared by the threads of a sync (one DB read per refresh)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        connection_id: int,
        settings: SmartSettings,
    ) -> None:
        self.session_factory = session_factory
        self.connection_id = connection_id
        self.settings = settings
        self._lock = threading.Lock()
        self._token: AccessToken | None = None

    def prime(self, conn: EhrConnection) -> None:
        """Start with the access token of a connection row just read, if it lasts (saves a
        transaction before the first request); otherwise `get` reads or refreshes it."""
        due = _refresh_at(conn, self.settings)
        if not conn.access_token_enc or _due(due):
            return
        try:
            token = self.settings.cipher.decrypt(conn.access_token_enc)
        except TokenKeyError:
            return  # `get` meets it again and the sync reports it
        with self._lock:
            self._token = AccessToken(token, conn.token_expires_at, due)

    def get(self) -> str:
        with self._lock:
            if self._token is None or _due(self._token.refresh_at):
                self._token = current_token(
                    self.session_factory, self.connection_id, settings=self.settings
                )
            return self._token.value

    def refused(self, token: str) -> str:
        """The EHR answered 401 to `token`: a fresh one (refreshing at most once per token)."""
        with self._lock:
            if self._token is not None and self._token.value != token:
                return self._token.value
            self._token = current_token(
                self.session_factory, self.connection_id, stale=token, settings=self.settings
            )
            return self._token.value


# --- disconnect ---------------------------------------------------------------------------------


def disconnect(
    session: Session, connection: EhrConnection, *, settings: SmartSettings | None = None
) -> bool:
    """Revoke the tokens at the EHR (when it has a revocation endpoint) and delete them.

    Records already fetched stay. Returns whether the EHR was asked to revoke.
    """
    settings = resolve(settings)
    cipher = settings.cipher
    pairs = []
    for stored, hint in (
        (connection.refresh_token_enc, "refresh_token"),
        (connection.access_token_enc, "access_token"),
    ):
        if stored:
            try:
                pairs.append((cipher.decrypt(stored), hint))
            except TokenKeyError:
                log.warning("connection %s: a stored token cannot be decrypted", connection.id)
    revoked = False
    if pairs:
        try:
            revoked = revoke(connection.server, pairs, settings=settings)
        except SmartError as exc:  # discovery failed: still forget the tokens here
            log.warning("connection %s: revocation skipped (%s)", connection.id, type(exc).__name__)
    connection.access_token_enc = None
    connection.refresh_token_enc = None
    connection.token_expires_at = None
    connection.refresh_lease_at = None
    connection.status = "disconnected"
    connection.updated_at = utcnow()
    session.flush()
    log.info("connection %s disconnected", connection.id)
    return revoked
