"""SMART App Launch authorization: the request, the callback, code exchange, refresh, revocation.

authlib's httpx OAuth2Client does the HTTP; this module adds SMART's rules: state, PKCE
verifier and nonce kept server-side (state and browser binding as digests, the verifier
encrypted), single-use transactions bound to one browser, the code exchanged only at the
token endpoint of the EHR the transaction was started with, and a checked token response.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from authlib.common.urls import add_params_to_qs
from authlib.integrations.base_client import OAuthError
from joserfc import jwt
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import EhrServer, OAuthTransaction
from portal.smart import scopes
from portal.smart.crypto import digest
from portal.smart.discovery import SmartConfiguration, discover
from portal.smart.errors import (
    ConfigurationError,
    EhrUnavailable,
    SignInUnavailable,
    SmartError,
    StateError,
    Step,
    TokenError,
    oauth_failure,
)
from portal.smart.fhir import FHIR_ID
from portal.smart.idtoken import validate_id_token
from portal.smart.keys import ASSERTION_ALG
from portal.smart.settings import SmartSettings, resolve

with warnings.catch_warnings():
    # authlib 1.9 prefers the httpx2 package and warns when it uses httpx (same API);
    # moving the SMART client to httpx2 is planned, the warning only says so.
    warnings.filterwarnings("ignore", "The httpx module is deprecated", DeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

log = logging.getLogger(__name__)

KINDS = ("ehr-launch", "standalone")
TRANSACTION_LIFETIME = timedelta(minutes=10)
ASSERTION_LIFETIME = 300  # SMART: a client assertion expires within five minutes
PRIVATE_KEY_JWT = "private_key_jwt"


@dataclass(frozen=True)
class ContextItem:
    """A resource the EHR had open when it launched the portal (SMART launch context)."""

    resource_type: str
    resource_id: str
    role: str = "launch"

    def as_json(self) -> dict[str, str]:
        return {"type": self.resource_type, "id": self.resource_id, "role": self.role}


MAX_CONTEXT_ITEMS = 20
_CONTEXT_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")


def launch_context(token: dict[str, Any], fhir_base: str) -> tuple[ContextItem, ...]:
    """The launch context of a token response: `encounter`, then each `fhirContext` item that
    is a reference to a resource on this EHR (SMART 2.x objects, or the bare reference strings
    of earlier drafts). Canonicals, identifiers, other servers and the patient are left out."""
    encounter = token.get("encounter")
    entries: list[tuple[Any, Any]] = (
        [(f"Encounter/{encounter}", "launch")] if isinstance(encounter, str) else []
    )
    context = token.get("fhirContext")
    for entry in context if isinstance(context, list) else []:
        if isinstance(entry, str):
            entries.append((entry, "launch"))
        elif isinstance(entry, dict):
            entries.append((entry.get("reference"), entry.get("role") or "launch"))
    found: dict[tuple[str, str], ContextItem] = {}
    base = fhir_base.rstrip("/") + "/"
    for reference, role in entries:
        if not isinstance(reference, str) or not isinstance(role, str):
            continue
        if reference.startswith(base):
            reference = reference[len(base) :]
        parts = reference.split("/")
        if len(parts) != 2 or not _CONTEXT_TYPE.match(parts[0]) or not FHIR_ID.match(parts[1]):
            continue
        if parts[0] == "Patient":
            continue  # the patient is the record itself
        found.setdefault((parts[0], parts[1]), ContextItem(parts[0], parts[1], role[:200]))
    return tuple(found.values())[:MAX_CONTEXT_ITEMS]


@dataclass
class LaunchResult:
    """What a completed authorization gave us; tokens are plain here, so never log this."""

    ehr_id: int
    kind: str
    account_id: int | None  # standalone: the account that started it
    patient: str
    fhir_user: str | None
    sub: str | None
    requested_scope: str
    granted_scope: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime | None
    need_patient_banner: bool = True
    smart_style_url: str | None = None
    encounter: str | None = None
    # What the EHR had open (its `encounter` first, then `fhirContext`), as references.
    context: tuple[ContextItem, ...] = ()
    id_token_claims: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def missing_sections(self) -> set[str]:
        """Records sections the patient or the EHR did not share (the page says why)."""
        return scopes.missing_sections(self.granted_scope)


def new_browser_binding() -> str:
    """A random value for the browser's session cookie; transactions are bound to it."""
    return secrets.token_urlsafe(32)


# --- the authorization request -------------------------------------------------------------------


def begin(
    session: Session,
    ehr: EhrServer,
    *,
    kind: str = "standalone",
    launch: str | None = None,
    account_id: int | None = None,
    redirect_uri: str,
    browser_binding: str,
    settings: SmartSettings | None = None,
) -> str:
    """Start an authorization: store the transaction, return the EHR's authorize URL."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    if kind == "ehr-launch" and not launch:
        raise ValueError("an EHR launch needs the `launch` parameter")
    if kind == "standalone":
        launch = None
    if not browser_binding:
        raise ValueError("a browser binding is required")
    settings = resolve(settings)
    try:
        return _begin(
            session, ehr, kind, launch, account_id, redirect_uri, browser_binding, settings
        )
    except SmartError as exc:
        raise exc.at(ehr.id, ehr.name) from None


def _begin(
    session: Session,
    ehr: EhrServer,
    kind: str,
    launch: str | None,
    account_id: int | None,
    redirect_uri: str,
    browser_binding: str,
    settings: SmartSettings,
) -> str:
    config = discover(ehr.fhir_base, settings=settings)
    scope = scopes.requested_scope(list(config.capabilities), ehr_launch=kind == "ehr-launch")
    state = secrets.token_urlsafe(32)  # 256 bits
    verifier = secrets.token_urlsafe(64)  # 86 characters, within PKCE's 43..128
    nonce = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(
        sa.delete(OAuthTransaction).where(OAuthTransaction.expires_at < now - timedelta(hours=1))
    )
    session.add(
        OAuthTransaction(
            state_hash=digest(state),
            browser_binding_hash=digest(browser_binding),
            ehr_server_id=ehr.id,
            account_id=account_id,
            kind=kind,
            launch=launch,
            code_verifier_enc=settings.cipher.encrypt(verifier),
            nonce=nonce,
            redirect_uri=redirect_uri,
            requested_scope=scope,
            created_at=now,
            expires_at=now + TRANSACTION_LIFETIME,
        )
    )
    session.flush()
    params: dict[str, str] = {"aud": ehr.fhir_base, "nonce": nonce}
    if launch:
        params["launch"] = launch
    with oauth_client(ehr, config, settings, redirect_uri=redirect_uri) as client:
        url, _ = client.create_authorization_url(
            config.authorization_endpoint,
            state=state,
            code_verifier=verifier,
            scope=scope,
            **params,
        )
    log.info("authorization started for EHR %s (%s)", ehr.id, kind)
    return str(url)


# --- the callback -------------------------------------------------------------------------------


def complete(
    session: Session,
    *,
    state: str | None,
    code: str | None,
    error: str | None = None,
    error_description: str | None = None,
    browser_binding: str | None,
    redirect_uri: str,
    iss: str | None = None,
    settings: SmartSettings | None = None,
) -> LaunchResult:
    """Finish an authorization from the callback's parameters, or raise a SmartError.

    The transaction is spent in a unit of work of its own (it stays spent whatever the
    request does next), so call this before writing anything else in `session`.
    """
    settings = resolve(settings)
    tx = _transaction(session, state, browser_binding)
    if not hmac.compare_digest(tx.redirect_uri, redirect_uri):
        raise StateError("callback reached at another redirect URI than the request named")
    if not _consume(session, tx.id):
        raise StateError("state already used or expired")
    ehr = session.get(EhrServer, tx.ehr_server_id)
    if ehr is None:
        raise StateError("the EHR of this transaction is no longer registered")
    try:
        if error:
            # The description is the EHR's (or a forger's) free text: neither shown nor logged.
            raise oauth_failure(Step.AUTHORIZE, error, detail="the EHR answered with an error")
        if not code:
            raise TokenError("callback without code or error", step=Step.AUTHORIZE)
        config = discover(ehr.fhir_base, settings=settings)
        if iss is not None and iss not in (config.issuer, ehr.fhir_base):
            # RFC 9207: the callback names the issuer; a different one is a mix-up attack.
            raise TokenError(
                "callback iss is not the EHR this transaction was started with",
                step=Step.AUTHORIZE,
            )
        verifier = settings.cipher.decrypt(tx.code_verifier_enc)
        token = _exchange(
            ehr, config, settings, code=code, verifier=verifier, redirect_uri=redirect_uri
        )
        result = _result(ehr, tx, config, settings, token)
    except SmartError as exc:
        raise exc.at(ehr.id, ehr.name) from None
    log.info("authorization completed for EHR %s", ehr.id)
    return result


def _transaction(session: Session, state: str | None, binding: str | None) -> OAuthTransaction:
    if not state or not binding:
        raise StateError("missing state or browser binding")
    tx = session.scalar(
        sa.select(OAuthTransaction).where(OAuthTransaction.state_hash == digest(state))
    )
    if tx is None:
        raise StateError("unknown state")
    if not hmac.compare_digest(tx.browser_binding_hash, digest(binding)):
        raise StateError("state is bound to another browser")
    if tx.used_at is not None:
        raise StateError("state already used")
    if tx.expires_at <= utcnow():
        raise StateError("state expired")
    return tx


def _consume(session: Session, tx_id: int) -> bool:
    """Mark the transaction used, atomically and durably; False if it was spent meanwhile."""
    now = utcnow()
    with Session(bind=session.get_bind()) as own, own.begin():
        spent = own.execute(
            sa.update(OAuthTransaction)
            .where(
                OAuthTransaction.id == tx_id,
                OAuthTransaction.used_at.is_(None),
                OAuthTransaction.expires_at > now,
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(spent.rowcount == 1)  # type: ignore[attr-defined]  # CursorResult has rowcount


def _exchange(
    ehr: EhrServer,
    config: SmartConfiguration,
    settings: SmartSettings,
    *,
    code: str,
    verifier: str,
    redirect_uri: str,
) -> dict[str, Any]:
    """POST grant_type=authorization_code to this EHR's token endpoint, at once."""
    with oauth_client(ehr, config, settings, redirect_uri=redirect_uri) as client:
        answer = _TokenAnswer.watch(client)
        with answer.failures(Step.TOKEN):
            token = client.fetch_token(
                config.token_endpoint,
                grant_type="authorization_code",
                code=code,
                redirect_uri=redirect_uri,
                code_verifier=verifier,
            )
    result = dict(token)
    try:
        check_token_response(result)
    except TokenError as exc:
        exc.http_status = answer.status
        raise
    return result


def _error_code(response: httpx.Response) -> Any:
    """The OAuth `error` of an error answer authlib did not parse (it stops at a 5xx)."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


class _TokenAnswer:
    """The HTTP status of the token endpoint's answer (authlib's compliance hook sees every
    response), and the SmartError each way the call can fail stands for."""

    def __init__(self) -> None:
        self.status: int | None = None

    @classmethod
    def watch(cls, client: OAuth2Client) -> _TokenAnswer:
        answer = cls()
        client.register_compliance_hook("access_token_response", answer.seen)
        client.register_compliance_hook("refresh_token_response", answer.seen)
        return answer

    def seen(self, response: httpx.Response) -> httpx.Response:
        self.status = response.status_code
        return response

    @contextmanager
    def failures(self, step: Step) -> Iterator[None]:
        """Turn authlib's and httpx's exceptions into SmartErrors that say what they mean."""
        try:
            yield
        except OAuthError as exc:
            raise oauth_failure(
                step,
                getattr(exc, "error", None),
                http_status=self.status,
                detail="the token endpoint refused the request",
            ) from None
        except httpx.HTTPStatusError as exc:  # a 5xx, or an error page that is not JSON
            raise oauth_failure(
                step,
                _error_code(exc.response),
                http_status=exc.response.status_code,
                detail="the token endpoint failed",
            ) from None
        except httpx.HTTPError as exc:  # timeout, refused connection, broken answer
            unavailable = EhrUnavailable if step is Step.REFRESH else SignInUnavailable
            raise unavailable(
                f"the token endpoint could not be reached ({type(exc).__name__})", step=step
            ) from None
        except ValueError:
            raise TokenError(
                "the token endpoint answered something that is not JSON",
                step=step,
                http_status=self.status,
            ) from None


def _result(
    ehr: EhrServer,
    tx: OAuthTransaction,
    config: SmartConfiguration,
    settings: SmartSettings,
    token: dict[str, Any],
) -> LaunchResult:
    claims: dict[str, Any] = {}
    if token.get("id_token"):
        # First: a clinician's launch has no `patient` (or the chart's), and must be told so.
        claims = validate_id_token(
            str(token["id_token"]),
            config=config,
            client_id=ehr.client_id,
            nonce=tx.nonce,
            settings=settings,
        )
    patient = token.get("patient")
    if not isinstance(patient, str) or not patient:
        raise TokenError("token response has no patient")
    style = token.get("smart_style_url")
    encounter = token.get("encounter")
    return LaunchResult(
        ehr_id=ehr.id,
        kind=tx.kind,
        account_id=tx.account_id,
        patient=patient,
        fhir_user=claims.get("fhirUser"),
        sub=claims.get("sub"),
        requested_scope=tx.requested_scope,
        granted_scope=str(token["scope"]),
        access_token=str(token["access_token"]),
        refresh_token=_optional_str(token.get("refresh_token")),
        expires_at=expiry(token),
        need_patient_banner=token.get("need_patient_banner") is not False,
        smart_style_url=style if isinstance(style, str) and style else None,
        encounter=encounter if isinstance(encounter, str) and encounter else None,
        context=launch_context(token, ehr.fhir_base),
        id_token_claims=claims,
    )


def check_token_response(
    token: dict[str, Any], *, require_scope: bool = True, step: Step = Step.TOKEN
) -> None:
    """access_token, token_type Bearer and (for a code exchange) scope are required."""
    if not isinstance(token.get("access_token"), str) or not token["access_token"]:
        raise TokenError("token response has no access_token", step=step)
    if str(token.get("token_type", "")).lower() != "bearer":
        raise TokenError("token response is not a Bearer token", step=step)
    if require_scope and (not isinstance(token.get("scope"), str) or not token["scope"].strip()):
        raise TokenError("token response has no scope", step=step)


def expiry(token: dict[str, Any], now: datetime | None = None) -> datetime | None:
    """When the access token expires, from expires_in (None when the EHR does not say)."""
    value = token.get("expires_in")
    try:
        seconds = int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return None if seconds is None else (now or utcnow()) + timedelta(seconds=seconds)


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# --- the client and its authentication ----------------------------------------------------------


def oauth_client(
    ehr: EhrServer,
    config: SmartConfiguration,
    settings: SmartSettings,
    *,
    redirect_uri: str | None = None,
) -> OAuth2Client:
    """authlib's client for this EHR, authenticating as its registration says."""
    kwargs: dict[str, Any] = {
        "redirect_uri": redirect_uri,
        "code_challenge_method": "S256",
        "timeout": settings.http_timeout,
        "follow_redirects": False,
    }
    if settings.transport is not None:
        kwargs["transport"] = settings.transport
    if ehr.client_type == "public":
        return OAuth2Client(
            ehr.client_id,
            token_endpoint_auth_method="none",  # noqa: S106  (a method name, not a secret)
            revocation_endpoint_auth_method="none",
            **kwargs,
        )
    if ehr.client_type == "confidential-symmetric":
        if not ehr.client_secret_enc:
            raise ConfigurationError(f"EHR {ehr.id} is confidential-symmetric but has no secret")
        return OAuth2Client(
            ehr.client_id,
            settings.cipher.decrypt(ehr.client_secret_enc),
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106  (a method name)
            revocation_endpoint_auth_method="client_secret_basic",
            **kwargs,
        )
    if ehr.client_type == "confidential-asymmetric":
        if settings.client_key is None:
            raise ConfigurationError("the portal has no signing key for private_key_jwt")
        client = OAuth2Client(
            ehr.client_id,
            token_endpoint_auth_method=PRIVATE_KEY_JWT,
            revocation_endpoint_auth_method=PRIVATE_KEY_JWT,
            **kwargs,
        )
        client.register_client_auth_method(
            (PRIVATE_KEY_JWT, PrivateKeyJwt(settings.client_key, config.token_endpoint))
        )
        return client
    raise ConfigurationError(f"EHR {ehr.id} has an unknown client type")


class PrivateKeyJwt:
    """RFC 7523 client assertion as SMART asks: iss = sub = client_id, aud = the token URL,
    exp five minutes ahead, a fresh jti every time, the key's kid, RS384."""

    def __init__(self, key: Any, token_endpoint: str) -> None:
        self.key = key
        self.token_endpoint = token_endpoint

    def assertion(self, client_id: str) -> str:
        now = int(time.time())
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": self.token_endpoint,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": secrets.token_urlsafe(32),
        }
        header = {"alg": ASSERTION_ALG, "kid": self.key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.key, algorithms=[ASSERTION_ALG])

    def __call__(
        self, auth: Any, method: str, uri: str, headers: Any, body: str
    ) -> tuple[str, Any, str]:
        body = add_params_to_qs(
            body or "",
            [
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", self.assertion(auth.client_id)),
            ],
        )
        if "Content-Length" in headers:
            headers["Content-Length"] = str(len(body))
        return uri, headers, body


# --- refresh and revocation ---------------------------------------------------------------------


def refresh_grant(
    ehr: EhrServer, refresh_token: str, *, settings: SmartSettings | None = None
) -> dict[str, Any]:
    """grant_type=refresh_token at the EHR's token endpoint, or a SmartError naming the EHR
    (its `oauth_error` is `invalid_grant` when the EHR no longer accepts the grant)."""
    settings = resolve(settings)
    try:
        config = discover(ehr.fhir_base, settings=settings)
        with oauth_client(ehr, config, settings) as client:
            answer = _TokenAnswer.watch(client)
            with answer.failures(Step.REFRESH):
                token = client.refresh_token(config.token_endpoint, refresh_token=refresh_token)
        result = dict(token)
        check_token_response(result, require_scope=False, step=Step.REFRESH)
    except SmartError as exc:
        raise exc.at(ehr.id, ehr.name) from None
    return result


def revoke(
    ehr: EhrServer,
    tokens: list[tuple[str, str]],
    *,
    settings: SmartSettings | None = None,
) -> bool:
    """RFC 7009 revocation of (token, type hint) pairs; False when the EHR has no endpoint.

    A failed revocation is logged and does not stop a disconnect.
    """
    settings = resolve(settings)
    config = discover(ehr.fhir_base, settings=settings)
    if not config.revocation_endpoint:
        return False
    with oauth_client(ehr, config, settings) as client:
        for value, hint in tokens:
            try:
                answer = client.revoke_token(
                    config.revocation_endpoint, token=value, token_type_hint=hint
                )
            except httpx.HTTPError as exc:
                log.warning("revocation at EHR %s failed (%s)", ehr.id, type(exc).__name__)
                continue
            if answer.status_code != 200:
                log.warning("revocation at EHR %s answered %s", ehr.id, answer.status_code)
    return True
