"""Revocation (RFC 7009) and introspection (RFC 7662)."""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest
import sqlalchemy as sa
from authlib.integrations.base_client import OAuthError
from flask import Flask

from portal.sandbox.models import Token
from tests.sandbox.flows import (
    FHIR_BASE,
    INTROSPECT,
    REVOKE,
    TOKEN,
    App,
    Login,
    authorize,
    db,
    exchange,
    login,
    oauth_client,
    patient_login,
    register_app,
)


@pytest.fixture
def who(sandbox_app: Flask, loaded) -> Login:
    return patient_login(sandbox_app, loaded["christin_stiedemann"].patient_id)


@pytest.fixture
def browser(http: httpx.Client, who: Login) -> httpx.Client:
    login(http, who)
    return http


@pytest.fixture
def app(sandbox_app: Flask) -> App:
    return register_app(sandbox_app, "confidential-symmetric")


def introspect(http: httpx.Client, app: App, token: str, **extra: str) -> dict:
    answer = http.post(INTROSPECT, data={"token": token, **extra}, auth=(app.client_id, app.secret))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_introspection_of_a_live_token(
    sandbox_app: Flask, browser: httpx.Client, app: App, who: Login
) -> None:
    client = oauth_client(sandbox_app, app)
    token = exchange(client, authorize(browser, client))
    info = introspect(browser, app, token["access_token"])
    assert info["active"] is True
    assert info["scope"] == token["scope"]
    assert info["client_id"] == app.client_id
    assert info["sub"] == str(who.user_id)
    assert info["patient"] == who.patient_id
    assert info["token_type"] == "Bearer"
    assert info["iat"] <= time.time() < info["exp"]
    assert info["exp"] - info["iat"] == token["expires_in"]
    refresh = introspect(browser, app, token["refresh_token"], token_type_hint="refresh_token")
    assert refresh["active"] is True and refresh["client_id"] == app.client_id


def test_introspection_needs_client_authentication(
    sandbox_app: Flask, browser: httpx.Client, app: App
) -> None:
    client = oauth_client(sandbox_app, app)
    token = exchange(client, authorize(browser, client))
    public = register_app(sandbox_app)
    for kwargs in (
        {"data": {"token": token["access_token"]}},
        {"data": {"token": token["access_token"], "client_id": public.client_id}},
        {"data": {"token": token["access_token"]}, "auth": (app.client_id, "wrong")},
    ):
        answer = browser.post(INTROSPECT, **kwargs)
        assert answer.status_code == 401
        assert answer.json()["error"] == "invalid_client"


def test_introspection_of_unknown_or_foreign_tokens_is_inactive(
    sandbox_app: Flask, browser: httpx.Client, app: App
) -> None:
    other = register_app(sandbox_app, "confidential-symmetric")
    client = oauth_client(sandbox_app, other)
    token = exchange(client, authorize(browser, client))
    assert introspect(browser, app, token["access_token"]) == {"active": False}
    assert introspect(browser, app, "no-such-token") == {"active": False}


def test_expired_token_is_inactive(sandbox_app: Flask, browser: httpx.Client, app: App) -> None:
    client = oauth_client(sandbox_app, app)
    token = exchange(client, authorize(browser, client))
    digest = hashlib.sha256(token["access_token"].encode()).hexdigest()
    with db(sandbox_app) as session:
        session.execute(
            sa.update(Token)
            .where(Token.access_token_hash == digest)
            .values(issued_at=int(time.time()) - token["expires_in"] - 1)
        )
    assert introspect(browser, app, token["access_token"]) == {"active": False}


def test_revoked_access_token_is_refused(
    sandbox_app: Flask, browser: httpx.Client, app: App, who: Login
) -> None:
    client = oauth_client(sandbox_app, app)
    token = exchange(client, authorize(browser, client, "launch/patient patient/*.rs"))
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert browser.get(f"{FHIR_BASE}/Patient/{who.patient_id}", headers=bearer).status_code == 200
    answer = client.revoke_token(REVOKE, token=token["access_token"])
    assert answer.status_code == 200
    assert introspect(browser, app, token["access_token"])["active"] is False
    fhir = browser.get(f"{FHIR_BASE}/Patient/{who.patient_id}", headers=bearer)
    assert fhir.status_code == 401


def test_revoking_the_refresh_token_revokes_its_access_token(
    sandbox_app: Flask, browser: httpx.Client, app: App
) -> None:
    client = oauth_client(sandbox_app, app)
    token = exchange(client, authorize(browser, client))
    answer = client.revoke_token(
        REVOKE, token=token["refresh_token"], token_type_hint="refresh_token"
    )
    assert answer.status_code == 200
    assert introspect(browser, app, token["access_token"])["active"] is False
    assert introspect(browser, app, token["refresh_token"])["active"] is False
    with pytest.raises(OAuthError) as refused:
        client.refresh_token(TOKEN, refresh_token=token["refresh_token"])
    assert refused.value.error == "invalid_grant"


def test_public_client_can_revoke_its_tokens(sandbox_app: Flask, browser: httpx.Client) -> None:
    app = register_app(sandbox_app)
    client = oauth_client(sandbox_app, app)
    token = exchange(client, authorize(browser, client))
    # Without a hint, and the refresh token given: still found and revoked.
    assert client.revoke_token(REVOKE, token=token["refresh_token"]).status_code == 200
    with pytest.raises(OAuthError):
        client.refresh_token(TOKEN, refresh_token=token["refresh_token"])


def test_private_key_jwt_client_can_revoke(sandbox_app: Flask, browser: httpx.Client) -> None:
    app = register_app(sandbox_app, "confidential-asymmetric")
    client = oauth_client(sandbox_app, app, alg="ES384")
    token = exchange(client, authorize(browser, client))
    assert client.revoke_token(REVOKE, token=token["refresh_token"]).status_code == 200
    with pytest.raises(OAuthError):
        client.refresh_token(TOKEN, refresh_token=token["refresh_token"])


def test_revocation_of_unknown_or_foreign_tokens(
    sandbox_app: Flask, browser: httpx.Client, app: App
) -> None:
    client = oauth_client(sandbox_app, app)
    token = exchange(client, authorize(browser, client))
    assert client.revoke_token(REVOKE, token="no-such-token").status_code == 200
    thief = oauth_client(sandbox_app, register_app(sandbox_app))
    answer = thief.revoke_token(REVOKE, token=token["access_token"])
    assert answer.status_code == 400
    assert introspect(browser, app, token["access_token"])["active"] is True
    assert browser.post(REVOKE, data={"token": token["access_token"]}).status_code == 401
