"""The sandbox's SMART App Launch authorization server, assembled from authlib's components.

- authorization code grant (RFC 6749) with PKCE S256 required for every client (RFC 7636),
- SMART rules on top: `aud` = FHIR base, known and registered scopes only, `launch` contexts,
- OpenID Connect id_token (RS256, the instance's signing key) with the `fhirUser` claim,
- refresh tokens with rotation, only for `offline_access` / `online_access`,
- client authentication: none (public), client_secret_basic, private_key_jwt (RFC 7523),
- revocation (RFC 7009) and introspection (RFC 7662).

One server per app (each instance has its own issuer); views reach it with `server()`.
Tokens, codes and secrets are stored as SHA-256 digests only and never logged.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, current_app
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy.exc import IntegrityError

from portal.db import transaction, utcnow
from portal.sandbox import faults
from portal.sandbox.db import sdb
from portal.sandbox.models import (
    AuthorizationCode,
    Client,
    Clinician,
    FhirResource,
    LaunchContext,
    PatientUser,
    Token,
    UsedJti,
    secret_hash,
)
from portal.sandbox.scopes import LAUNCH_SCOPES, REFRESH_SCOPES, is_known_scope
from portal.sandbox.urls import absolute, fhir_base

# The client-authentication method names authlib uses internally; the model's
# Client.token_endpoint_auth_method returns the same names.
PRIVATE_KEY_JWT = JWTBearerClientAssertion.CLIENT_AUTH_METHOD  # advertised as private_key_jwt
TOKEN_AUTH_METHODS = ["client_secret_basic", PRIVATE_KEY_JWT, "none"]
CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", PRIVATE_KEY_JWT]

ASSERTION_ALGORITHMS = ["RS384", "ES384"]
ASSERTION_MAX_LIFETIME = 300  # SMART: a client assertion expires at most five minutes ahead
ID_TOKEN_ALG = "RS256"  # noqa: S105  (an algorithm name, not a secret)

_ALLOWED_DESCRIPTION = {chr(c) for c in range(0x20, 0x7F)} - {'"', "\\"}


def server() -> SandboxAuthorizationServer:
    """The authorization server of the current app."""
    srv: SandboxAuthorizationServer = current_app.extensions["sandbox_oauth"]
    return srv


def init_app(app: Flask) -> SandboxAuthorizationServer:
    """Build this instance's authorization server and keep it in app.extensions."""
    # authlib logs issued tokens at DEBUG level; never let those records out.
    for name in ("authlib.oauth2", "authlib.oidc"):
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger(name).level))
    srv = SandboxAuthorizationServer()
    srv.init_app(app)
    srv.register_client_auth_method(PRIVATE_KEY_JWT, PrivateKeyJwtAuthentication())
    srv.register_grant(
        AuthorizationCodeGrant, [RequiredS256(), SmartOpenIDCode(), SmartLaunchContext()]
    )
    srv.register_grant(RefreshTokenGrant, [SmartLaunchContext()])
    srv.register_endpoint(Revocation)
    srv.register_endpoint(Introspection)
    app.extensions["sandbox_oauth"] = srv
    return srv


def safe_description(text: str) -> str:
    """OAuth error descriptions allow only a subset of ASCII (RFC 6749 section 5.2)."""
    return "".join(c if c in _ALLOWED_DESCRIPTION else "?" for c in text)


def random_token(*_args: Any, **_kwargs: Any) -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


# --- server -------------------------------------------------------------------------


class SandboxAuthorizationServer(AuthorizationServer):
    """authlib's Flask server wired to the sandbox database."""

    def __init__(self) -> None:
        super().__init__(query_client=query_client, save_token=save_token)

    def load_config(self, config: Any) -> None:
        self.register_token_generator("default", SmartTokenGenerator())
        # Scopes are checked per client: Client.get_allowed_scope, then SmartLaunchContext.
        self.scopes_supported = None

    def validate_requested_scope(self, scope: str | None) -> None:
        if not scope or not scope.split():
            raise InvalidScopeError("The request has no 'scope'.")


def query_client(client_id: str) -> Client | None:
    return sdb.session.get(Client, client_id)


def save_token(token: dict[str, Any], request: OAuth2Request) -> None:
    """Store the digests of a newly issued token with the launch context it carries."""
    user: PatientUser | Clinician = request.user
    source: AuthorizationCode | Token = request.authorization_code or request.refresh_token
    row = Token(
        client_id=request.client.client_id,
        user_id=user.record_owner.id,
        practitioner_id=user.practitioner_id,
        access_token_hash=secret_hash(token["access_token"]),
        refresh_token_hash=(
            secret_hash(token["refresh_token"]) if token.get("refresh_token") else None
        ),
        scope=token.get("scope", ""),
        issued_at=int(time.time()),
        expires_in=int(token["expires_in"]),
        # A patient's token is always bound to that patient's compartment, with or
        # without a launch scope; the response names the patient only when granted.
        patient_id=source.patient_id or user.patient_id,
        encounter_id=source.encounter_id,
        need_patient_banner=source.need_patient_banner,
        smart_style_url=source.smart_style_url,
    )
    sdb.session.add(row)
    sdb.session.flush()


class SmartTokenGenerator(BearerTokenGenerator):
    """Bearer tokens of 256 random bits; refresh tokens only for offline/online access."""

    def __init__(self) -> None:
        super().__init__(random_token, random_token)

    def generate(
        self,
        grant_type: str,
        client: Client,
        user: PatientUser | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        session = sdb.session
        scopes = set((scope or "").split())
        refresh = include_refresh_token and bool(scopes & REFRESH_SCOPES)
        if refresh and faults.take(session, "no_refresh_token") is not None:
            refresh = False
        if expires_in is None:
            lifetime = faults.take(session, "token_lifetime")
            expires_in = int(
                lifetime if lifetime is not None else current_app.config["ACCESS_TOKEN_LIFETIME"]
            )
        token: dict[str, Any] = super().generate(
            grant_type, client, user, scope, expires_in, refresh
        )
        token["expires_in"] = expires_in  # authlib leaves out a zero lifetime
        if not token.get("scope"):
            raise InvalidScopeError("No scope is left to grant.")
        return token


# --- authorization code grant ---------------------------------------------------------


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    """Codes are single-use, short-lived and stored as digests with their launch context."""

    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        user: PatientUser | Clinician = request.user
        launch: LaunchContext | None = getattr(request, "smart_launch", None)
        data = request.payload.data
        config = current_app.config
        item = AuthorizationCode(
            code_hash=secret_hash(code),
            client_id=request.client.client_id,
            user_id=user.record_owner.id,
            practitioner_id=user.practitioner_id,
            redirect_uri=request.payload.redirect_uri,
            scope=consented_scope(request),
            nonce=data.get("nonce"),
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            patient_id=launch.patient_id if launch else user.patient_id,
            encounter_id=launch.encounter_id if launch else None,
            need_patient_banner=launch.need_patient_banner if launch else True,
            smart_style_url=launch.smart_style_url if launch else default_style_url(),
            auth_time=getattr(request, "auth_time", None) or int(time.time()),
            expires_at=utcnow() + timedelta(seconds=int(config["CODE_LIFETIME"])),
        )
        sdb.session.add(item)
        sdb.session.flush()

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        return sdb.session.scalar(
            sa.select(AuthorizationCode).where(
                AuthorizationCode.code_hash == secret_hash(code),
                AuthorizationCode.client_id == client.client_id,
                AuthorizationCode.expires_at > utcnow(),
            )
        )

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        # Atomic: of two concurrent exchanges of one code, only one deletes the row.
        deleted = sdb.session.execute(
            sa.delete(AuthorizationCode)
            .where(AuthorizationCode.id == authorization_code.id)
            .execution_options(synchronize_session=False)
        )
        if deleted.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult has rowcount
            raise InvalidGrantError("Invalid 'code' in request.")

    def authenticate_user(self, authorization_code: AuthorizationCode) -> PatientUser | Clinician:
        return acting_user(authorization_code.user, authorization_code.practitioner_id)


def acting_user(user: PatientUser, practitioner_id: str | None) -> PatientUser | Clinician:
    """Who authorized a grant: the patient, or the clinician who had their chart open."""
    if practitioner_id is None:
        return user
    return Clinician(practitioner_id, practitioner_name(practitioner_id), user)


def practitioner_name(practitioner_id: str) -> str:
    """The clinician's name from their Practitioner resource."""
    content = sdb.session.scalar(
        sa.select(FhirResource.content).where(
            FhirResource.resource_type == "Practitioner",
            FhirResource.resource_id == practitioner_id,
        )
    )
    return person_name(content or {}) or f"Practitioner {practitioner_id}"


def person_name(resource: dict[str, Any]) -> str:
    """`Prefix Given Family` from the official (else first) HumanName of a resource."""
    names = resource.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    if name.get("text"):
        return str(name["text"])
    parts = [*name.get("prefix", []), *name.get("given", []), name.get("family", "")]
    return " ".join(p for p in parts if p)


def consented_scope(request: OAuth2Request) -> str:
    """The validated scope, narrowed to what the patient kept ticked (launch scopes stay)."""
    kept: set[str] | None = getattr(request, "consented_scopes", None)
    scopes = request.scope.split()
    if kept is None:
        return " ".join(scopes)
    return " ".join(s for s in scopes if s in kept or s in LAUNCH_SCOPES)


def default_style_url() -> str:
    return str(current_app.config["BASE_URL"]) + "/ehr-static/smart-style.json"


class RequiredS256(CodeChallenge):
    """PKCE for every client, S256 only: `plain` or a missing challenge is refused."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def __init__(self) -> None:
        super().__init__(required=True)

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send 'code_challenge'.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE 'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class SmartLaunchContext:
    """SMART rules of the authorization request, and the launch context in token responses."""

    def __call__(self, grant: Any) -> None:
        if isinstance(grant, AuthorizationCodeGrant):
            grant.register_hook(
                "after_validate_authorization_request_payload", self.validate_request
            )
        grant.register_hook("after_create_token_response", self.add_context)

    def validate_request(self, grant: Any, redirect_uri: str) -> None:
        request = grant.request
        data = request.payload.data
        if data.get("aud") != fhir_base():
            raise InvalidRequestError("'aud' must be this server's FHIR base URL.")
        # request.scope is already narrowed to the client's registration (Client.get_allowed_scope).
        scopes = list(dict.fromkeys(s for s in request.scope.split() if is_known_scope(s)))
        if not scopes:
            raise InvalidScopeError("None of the requested scopes can be granted to this app.")
        request.scope = " ".join(scopes)

        launch_id = data.get("launch")
        if "launch" in scopes and not launch_id:
            raise InvalidRequestError("The 'launch' scope needs a 'launch' parameter.")
        request.smart_launch = None
        if launch_id:
            launch = sdb.session.get(LaunchContext, launch_id)
            if (
                launch is None
                or launch.client_id != request.client.client_id
                or launch.expires_at <= utcnow()
            ):
                raise InvalidRequestError("Unknown or expired 'launch' parameter.")
            if "launch" in scopes:
                request.smart_launch = launch

    def add_context(self, grant: Any, result: tuple[int, dict[str, Any], Any]) -> None:
        _status, token, _headers = result
        source: AuthorizationCode | Token = (
            grant.request.authorization_code or grant.request.refresh_token
        )
        scopes = set(token.get("scope", "").split())
        if scopes & {"launch", "launch/patient"} and source.patient_id:
            token["patient"] = source.patient_id
        if scopes & {"launch", "launch/encounter"} and source.encounter_id:
            token["encounter"] = source.encounter_id
        token["need_patient_banner"] = source.need_patient_banner
        if source.smart_style_url:
            token["smart_style_url"] = source.smart_style_url


class SmartOpenIDCode(OpenIDCode):
    """id_token signed RS256 with the instance key; `fhirUser` when that scope was granted."""

    def __init__(self) -> None:
        super().__init__(require_nonce=False)

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        found = sdb.session.scalar(
            sa.select(AuthorizationCode.id).where(
                AuthorizationCode.client_id == request.payload.client_id,
                AuthorizationCode.nonce == nonce,
            )
        )
        return found is not None

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        key: RSAKey = current_app.extensions["sandbox_signing_key"]
        return key

    def get_client_algorithm(self, client: Client) -> str:
        return ID_TOKEN_ALG

    def get_encode_header(self, client: Client) -> dict[str, str]:
        key = self.resolve_client_private_key(client)
        return {"alg": ID_TOKEN_ALG, "kid": str(key.kid), "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": fhir_base(), "aud": client.client_id}

    def generate_user_info(self, user: PatientUser | Clinician, scope: str) -> dict[str, Any]:
        scopes = scope.split()
        info: dict[str, Any] = {"sub": user.subject}
        if "fhirUser" in scopes:
            info["fhirUser"] = f"{fhir_base()}/{user.fhir_user}"
        if "profile" in scopes:
            info["name"] = user.display_name
        return info


# --- refresh ----------------------------------------------------------------------------


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Rotation: each refresh issues a new refresh token and spends the old one."""

    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        return sdb.session.scalar(
            sa.select(Token).where(
                Token.refresh_token_hash == secret_hash(refresh_token),
                Token.refresh_revoked.is_(False),
            )
        )

    def authenticate_user(self, refresh_token: Token) -> PatientUser | Clinician:
        return acting_user(refresh_token.user, refresh_token.practitioner_id)

    def revoke_old_credential(self, refresh_token: Token) -> None:
        # Atomic: of two concurrent refreshes with one token, only one succeeds.
        spent = sdb.session.execute(
            sa.update(Token)
            .where(Token.id == refresh_token.id, Token.refresh_revoked.is_(False))
            .values(refresh_revoked=True)
            .execution_options(synchronize_session=False)
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult has rowcount
            raise InvalidGrantError("The refresh token was already used.")
        refresh_token.refresh_revoked = True


# --- client authentication: private_key_jwt ----------------------------------------------


class PrivateKeyJwtAuthentication(JWTBearerClientAssertion):
    """RFC 7523 client assertions as SMART requires them (confidential-asymmetric clients).

    aud = the token URL; iss = sub = client_id; RS384 or ES384, key picked by `kid` from
    the registered JWKS; exp at most five minutes ahead; each jti accepted once.
    """

    def __init__(self) -> None:
        super().__init__(validate_jti=True, leeway=60)

    def get_audiences(self) -> list[str]:
        return [absolute("token")]

    def resolve_client_public_key(self, client: Client) -> KeySet:
        if client.client_type != "confidential-asymmetric" or not client.jwks:
            raise InvalidClientError(description="This client has no registered public keys.")
        return KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]  # a JWKS dict

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGORITHMS)
        except JoseError as error:
            raise InvalidClientError(
                description=safe_description(error.description or "Invalid client assertion.")
            ) from error
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: Any) -> None:
        exp = claims.get("exp")
        if (
            isinstance(exp, int | float)
            and exp > time.time() + ASSERTION_MAX_LIFETIME + self.leeway
        ):
            raise InvalidClientError(
                description="The client assertion must expire within five minutes."
            )
        super().verify_claims(claims)

    def validate_jti(self, claims: Any, jti: Any) -> bool:
        """Burn the jti in its own transaction, so it stays spent even if the request fails."""
        if not isinstance(jti, str) or not jti or len(jti) > 255:
            return False
        exp = claims.get("exp")
        expires = utcnow() + timedelta(seconds=ASSERTION_MAX_LIFETIME + self.leeway)
        if isinstance(exp, int | float):
            expires = max(expires, utcnow() + timedelta(seconds=exp - time.time() + self.leeway))
        try:
            with transaction(sdb.sessionmaker(current_app)) as session:
                session.execute(sa.delete(UsedJti).where(UsedJti.expires_at < utcnow()))
                session.add(UsedJti(client_id=claims["sub"], jti=jti, expires_at=expires))
        except IntegrityError:
            return False
        return True


# --- revocation and introspection ------------------------------------------------------


@dataclass
class FoundToken:
    """A Token row and which of its two strings was presented."""

    row: Token
    kind: str  # access_token | refresh_token

    def check_client(self, client: Client) -> bool:
        return self.row.check_client(client)

    def is_expired(self) -> bool:
        return self.kind == "access_token" and self.row.is_expired()

    def is_revoked(self) -> bool:
        if self.kind == "refresh_token":
            return self.row.refresh_revoked
        return self.row.access_revoked


def find_token(value: str, hint: str | None) -> FoundToken | None:
    """The token whose access or refresh string is `value` (the hint decides which comes first)."""
    digest = secret_hash(value)
    kinds = ["refresh_token", "access_token"]
    if hint != "refresh_token":
        kinds.reverse()
    for kind in kinds:
        column = Token.access_token_hash if kind == "access_token" else Token.refresh_token_hash
        row = sdb.session.scalar(sa.select(Token).where(column == digest))
        if row is not None:
            return FoundToken(row, kind)
    return None


class Revocation(RevocationEndpoint):
    """RFC 7009. Revoking a refresh token also revokes the access token issued with it."""

    CLIENT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> FoundToken | None:
        return find_token(token_string, token_type_hint)

    def revoke_token(self, token: FoundToken, request: OAuth2Request) -> None:
        token.row.access_revoked = True
        if token.kind == "refresh_token":
            token.row.refresh_revoked = True
        sdb.session.flush()


class Introspection(IntrospectionEndpoint):
    """RFC 7662 for authenticated (confidential) clients, about their own tokens."""

    CLIENT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> FoundToken | None:
        return find_token(token_string, token_type_hint)

    def check_permission(self, token: FoundToken, client: Client, request: OAuth2Request) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: FoundToken) -> dict[str, Any]:
        row = token.row
        payload: dict[str, Any] = {
            "active": True,
            "scope": row.scope,
            "client_id": row.client_id,
            "sub": acting_user(row.user, row.practitioner_id).subject,
            "iss": fhir_base(),
            "iat": row.issued_at,
        }
        if row.patient_id:
            payload["patient"] = row.patient_id
        if token.kind == "access_token":
            payload["token_type"] = "Bearer"  # noqa: S105  (a token type, not a secret)
            payload["exp"] = row.issued_at + row.expires_in
        return payload
