"""Helpers for tests of the sandbox's authorization server.

Apps use authlib's real OAuth 2 client; the patient's browser is the `http` fixture (a
cookie jar), which signs in, reads the consent page and posts the consent form.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
from flask import Flask
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy.orm import Session

from portal.db import transaction
from portal.sandbox import accounts
from portal.sandbox.db import sdb
from portal.sandbox.models import FhirResource, PatientUser
from tests.sandbox.conftest import ADMIN, BASE_URL

FHIR_BASE = BASE_URL + "/fhir"
AUTHORIZE = BASE_URL + "/auth/authorize"
TOKEN = BASE_URL + "/auth/token"
REVOKE = BASE_URL + "/auth/revoke"
INTROSPECT = BASE_URL + "/auth/introspect"
JWKS = BASE_URL + "/auth/jwks"
REDIRECT_URI = "https://app.test/callback"
LAUNCH_URL = "https://app.test/launch"

LAB = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
READ_SCOPE = f"openid fhirUser launch/patient offline_access patient/Patient.rs {LAB}"


def db(app: Flask) -> Any:
    """A unit of work on the sandbox database, outside any request."""
    return transaction(sdb.sessionmaker(app))


# --- registered apps -----------------------------------------------------------------------------


@dataclass
class App:
    client_id: str
    client_type: str
    redirect_uri: str = REDIRECT_URI
    secret: str | None = None
    keys: dict[str, Any] = field(default_factory=dict)  # alg -> private key


def register_app(
    sandbox_app: Flask,
    client_type: str = "public",
    *,
    scope: str | None = None,
    launch_url: str | None = None,
    name: str = "Test App",
) -> App:
    """Register a fresh app (unique client_id); asymmetric apps get an RS384 and an ES384 key."""
    client_id = f"{client_type.split('-')[-1]}-{uuid.uuid4().hex[:10]}"
    app = App(client_id, client_type)
    kwargs: dict[str, Any] = {}
    if client_type == "confidential-symmetric":
        app.secret = secrets.token_urlsafe(24)
        kwargs["secret"] = app.secret
    if client_type == "confidential-asymmetric":
        app.keys = {
            "RS384": RSAKey.generate_key(2048, {"alg": "RS384", "use": "sig"}, auto_kid=True),
            "ES384": ECKey.generate_key("P-384", {"alg": "ES384", "use": "sig"}, auto_kid=True),
        }
        kwargs["jwks"] = {"keys": [k.as_dict(private=False) for k in app.keys.values()]}
    with db(sandbox_app) as session:
        accounts.register_client(
            session,
            client_id=client_id,
            name=name,
            client_type=client_type,
            redirect_uris=[REDIRECT_URI],
            launch_url=launch_url,
            scope=scope,
            **kwargs,
        )
    return app


class SmartPrivateKeyJWT(PrivateKeyJWT):
    """private_key_jwt as SMART wants it: kid header, exp five minutes ahead, fresh jti."""

    def sign(self, auth: Any, token_endpoint: str) -> str:
        key = auth.client_secret
        return private_key_jwt_sign(
            key,
            client_id=auth.client_id,
            token_endpoint=token_endpoint,
            alg=self.alg,
            header={"kid": key.kid},
            expires_in=300,
        )


def oauth_client(sandbox_app: Flask, app: App, alg: str = "RS384") -> OAuth2Client:
    """authlib's client for this app, talking to the sandbox in-process."""
    kwargs: dict[str, Any] = {
        "redirect_uri": app.redirect_uri,
        "code_challenge_method": "S256",
        "transport": httpx.WSGITransport(app=sandbox_app),
        "base_url": BASE_URL,
    }
    if app.client_type == "confidential-symmetric":
        client = OAuth2Client(app.client_id, app.secret, **kwargs)
    elif app.client_type == "confidential-asymmetric":
        client = OAuth2Client(
            app.client_id,
            app.keys[alg],
            token_endpoint_auth_method="private_key_jwt",
            revocation_endpoint_auth_method="private_key_jwt",
            **kwargs,
        )
        client.register_client_auth_method(SmartPrivateKeyJWT(TOKEN, alg=alg))
    else:
        client = OAuth2Client(app.client_id, **kwargs)
    return client


def client_assertion(
    key: Any,
    client_id: str,
    *,
    alg: str = "RS384",
    aud: str = TOKEN,
    exp_in: int = 240,
    jti: str | None = "random",
    kid: str | None = "from-key",
    issuer: str | None = None,
) -> str:
    """A hand-made client assertion, for the tests that break one rule at a time."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer or client_id,
        "sub": client_id,
        "aud": aud,
        "exp": now + exp_in,
        "iat": now,
    }
    if jti == "random":
        claims["jti"] = secrets.token_urlsafe(16)
    elif jti is not None:
        claims["jti"] = jti
    header: dict[str, Any] = {"alg": alg}
    if kid == "from-key":
        header["kid"] = key.kid
    elif kid is not None:
        header["kid"] = kid
    return jwt.encode(header, claims, key, algorithms=[alg])


# --- patients and the browser --------------------------------------------------------------------


@dataclass
class Login:
    username: str
    password: str
    patient_id: str
    user_id: int
    display_name: str


def patient_login(sandbox_app: Flask, patient_id: str) -> Login:
    """A demo login of a loaded patient, created on first use.

    Other tests may add logins of their own for the same patient; this one has a password.
    """
    with db(sandbox_app) as session:
        accounts.create_demo_users(session)
        user = session.scalar(
            sa.select(PatientUser)
            .where(PatientUser.patient_id == patient_id, PatientUser.demo_password.is_not(None))
            .order_by(PatientUser.id)
            .limit(1)
        )
        if user is None:
            patient = session.scalar(
                sa.select(FhirResource.content).where(
                    FhirResource.resource_type == "Patient",
                    FhirResource.resource_id == patient_id,
                )
            )
            assert patient is not None
            username = accounts.demo_username(session, patient)
            user = accounts.ensure_patient_user(
                session, patient, username, accounts.demo_password(username)
            )
        assert user.demo_password
        return Login(user.username, user.demo_password, patient_id, user.id, user.display_name)


@dataclass
class Form:
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    checkboxes: list[tuple[str, str, bool]] = field(default_factory=list)
    buttons: list[tuple[str, str]] = field(default_factory=list)
    selects: dict[str, list[str]] = field(default_factory=dict)

    def data(self, **overrides: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in self.fields:
            out[name] = value
        for name, value, checked in self.checkboxes:
            if checked:
                out.setdefault(name, []).append(value)
        out.update(overrides)
        return out


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif not self.forms:
            return
        elif tag == "input" and a.get("name"):
            if a.get("type") == "checkbox":
                self.forms[-1].checkboxes.append((a["name"], a.get("value", "on"), "checked" in a))
            else:
                self.forms[-1].fields.append((a["name"], a.get("value", "")))
        elif tag == "button" and a.get("name"):
            self.forms[-1].buttons.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self._select = a.get("name")
            self.forms[-1].selects[self._select or ""] = []
        elif tag == "option" and self._select is not None:
            self.forms[-1].selects[self._select].append(a.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def forms(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def form_with(html: str, field_name: str) -> Form:
    """The first form with a field, checkbox, button or select of this name."""
    for form in forms(html):
        names = (
            {n for n, _ in form.fields}
            | {n for n, _, _ in form.checkboxes}
            | {n for n, _ in form.buttons}
            | set(form.selects)
        )
        if field_name in names:
            return form
    raise AssertionError(f"no form with {field_name!r}")


def login(http: httpx.Client, who: Login, next_url: str | None = None) -> httpx.Response:
    """Sign the browser in through the login page."""
    page = http.get("/auth/login", params={"next": next_url} if next_url else None)
    form = form_with(page.text, "password")
    return http.post("/auth/login", data=form.data(username=who.username, password=who.password))


def query(url: str) -> dict[str, str]:
    """The query parameters of a redirect URL."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def consent(
    http: httpx.Client,
    authorize_url: str,
    *,
    decision: str = "allow",
    untick: tuple[str, ...] = (),
) -> httpx.Response:
    """Open the authorization URL in the signed-in browser and answer the consent page."""
    page = http.get(authorize_url)
    assert page.status_code == 200, (page.status_code, page.headers.get("location"))
    form = form_with(page.text, "decision")
    data = form.data(decision=decision)
    data["kept"] = [v for v in data.get("kept", []) if not set(v.split()) & set(untick)]
    return http.post(form.action, data=data)


@dataclass
class Authorized:
    callback: str  # the redirect back to the app, with code and state
    state: str
    verifier: str


def authorize(
    http: httpx.Client,
    client: OAuth2Client,
    scope: str = READ_SCOPE,
    *,
    untick: tuple[str, ...] = (),
    **params: Any,
) -> Authorized:
    """Run the browser part of the code flow for a signed-in patient; return the callback."""
    verifier = secrets.token_urlsafe(48)
    params.setdefault("aud", FHIR_BASE)
    url, state = client.create_authorization_url(
        AUTHORIZE, code_verifier=verifier, scope=scope, **params
    )
    answer = consent(http, url, untick=untick)
    assert answer.status_code == 302, answer.text
    return Authorized(answer.headers["location"], state, verifier)


def exchange(client: OAuth2Client, done: Authorized) -> dict[str, Any]:
    """Trade the code for tokens with the real client."""
    token: dict[str, Any] = client.fetch_token(
        TOKEN,
        authorization_response=done.callback,
        state=done.state,
        code_verifier=done.verifier,
        redirect_uri=client.redirect_uri,
    )
    return token


def get_token(
    sandbox_app: Flask,
    http: httpx.Client,
    app: App,
    who: Login,
    scope: str = READ_SCOPE,
    **params: Any,
) -> dict[str, Any]:
    """Sign in, consent to everything and exchange the code."""
    login(http, who)
    client = oauth_client(sandbox_app, app)
    return exchange(client, authorize(http, client, scope, **params))


def set_fault(http: httpx.Client, name: str, value: int = 1, remaining: int | None = None) -> None:
    answer = http.post(
        "/admin/faults", json={name: {"value": value, "remaining": remaining}}, auth=ADMIN
    )
    assert answer.status_code == 200, answer.text


@pytest.fixture
def no_faults(http: httpx.Client) -> Iterator[None]:
    yield
    http.delete("/admin/faults", auth=ADMIN)


def session_rows(sandbox_app: Flask, statement: Any) -> list[Any]:
    with db(sandbox_app) as session:
        assert isinstance(session, Session)
        return list(session.scalars(statement))
