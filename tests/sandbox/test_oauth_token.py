"""The token endpoint: code exchange, refresh rotation, id_token, lifetimes and faults."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from authlib.integrations.base_client import OAuthError
from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet

from portal.db import utcnow
from portal.sandbox.models import AuthorizationCode, Token
from tests.sandbox.flows import (
    FHIR_BASE,
    LAB,
    READ_SCOPE,
    TOKEN,
    App,
    Authorized,
    Login,
    authorize,
    db,
    exchange,
    login,
    no_faults,  # noqa: F401  (fixture)
    oauth_client,
    patient_login,
    query,
    register_app,
    session_rows,
    set_fault,
)


@pytest.fixture
def app(sandbox_app: Flask) -> App:
    return register_app(sandbox_app)


@pytest.fixture
def who(sandbox_app: Flask, loaded) -> Login:
    return patient_login(sandbox_app, loaded["raeann_okon"].patient_id)


@pytest.fixture
def browser(http: httpx.Client, who: Login) -> httpx.Client:
    login(http, who)
    return http


def raw_exchange(http: httpx.Client, app: App, done: Authorized, **overrides) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": query(done.callback)["code"],
        "redirect_uri": app.redirect_uri,
        "code_verifier": done.verifier,
        "client_id": app.client_id,
    }
    data.update(overrides)
    return http.post(TOKEN, data={k: v for k, v in data.items() if v is not None})


def test_public_client_exchange(
    sandbox_app: Flask, browser: httpx.Client, app: App, who: Login
) -> None:
    client = oauth_client(sandbox_app, app)
    done = authorize(browser, client)
    answer = raw_exchange(browser, app, done)
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    token = answer.json()
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == sandbox_app.config["ACCESS_TOKEN_LIFETIME"]
    assert token["scope"].split() == READ_SCOPE.split()
    assert token["patient"] == who.patient_id
    assert token["need_patient_banner"] is True
    assert token["smart_style_url"] == "http://ehr.test/ehr-static/smart-style.json"
    assert "encounter" not in token
    assert token["refresh_token"] and token["id_token"]
    for value in (token["access_token"], token["refresh_token"]):
        assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", value)  # >= 256 random bits


def test_tokens_and_codes_are_stored_as_digests(
    sandbox_app: Flask, browser: httpx.Client, app: App
) -> None:
    client = oauth_client(sandbox_app, app)
    done = authorize(browser, client)
    code = query(done.callback)["code"]
    digest = hashlib.sha256(code.encode()).hexdigest()
    stored = session_rows(sandbox_app, sa.select(AuthorizationCode.code_hash))
    assert digest in stored and code not in stored
    token = exchange(client, done)
    row = session_rows(
        sandbox_app,
        sa.select(Token).where(
            Token.access_token_hash == hashlib.sha256(token["access_token"].encode()).hexdigest()
        ),
    )[0]
    assert row.refresh_token_hash == hashlib.sha256(token["refresh_token"].encode()).hexdigest()
    assert token["access_token"] not in str(vars(row))
    # The code is gone once exchanged.
    assert digest not in session_rows(sandbox_app, sa.select(AuthorizationCode.code_hash))


def test_code_lifetime(sandbox_app: Flask, browser: httpx.Client, app: App) -> None:
    done = authorize(browser, oauth_client(sandbox_app, app))
    digest = hashlib.sha256(query(done.callback)["code"].encode()).hexdigest()
    row = session_rows(
        sandbox_app, sa.select(AuthorizationCode).where(AuthorizationCode.code_hash == digest)
    )[0]
    lifetime = (row.expires_at - utcnow()).total_seconds()
    assert sandbox_app.config["CODE_LIFETIME"] - 5 < lifetime <= sandbox_app.config["CODE_LIFETIME"]


def test_wrong_or_missing_verifier(sandbox_app: Flask, browser: httpx.Client, app: App) -> None:
    done = authorize(browser, oauth_client(sandbox_app, app))
    wrong = raw_exchange(browser, app, done, code_verifier="w" * 50)
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    missing = raw_exchange(browser, app, done, code_verifier=None)
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"
    # A failed attempt does not spend the code: the right verifier still works.
    assert raw_exchange(browser, app, done).status_code == 200


def test_code_is_single_use(sandbox_app: Flask, browser: httpx.Client, app: App) -> None:
    client = oauth_client(sandbox_app, app)
    done = authorize(browser, client)
    exchange(client, done)
    with pytest.raises(OAuthError) as refused:
        exchange(client, done)
    assert refused.value.error == "invalid_grant"


def test_expired_code_is_refused(sandbox_app: Flask, browser: httpx.Client, app: App) -> None:
    client = oauth_client(sandbox_app, app)
    done = authorize(browser, client)
    digest = hashlib.sha256(query(done.callback)["code"].encode()).hexdigest()
    with db(sandbox_app) as session:
        session.execute(
            sa.update(AuthorizationCode)
            .where(AuthorizationCode.code_hash == digest)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    with pytest.raises(OAuthError) as refused:
        exchange(client, done)
    assert refused.value.error == "invalid_grant"


def test_redirect_uri_must_match_at_the_token_endpoint(
    sandbox_app: Flask, browser: httpx.Client, app: App
) -> None:
    done = authorize(browser, oauth_client(sandbox_app, app))
    for redirect_uri in ("https://app.test/other", None):
        answer = raw_exchange(browser, app, done, redirect_uri=redirect_uri)
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid_grant"


def test_code_belongs_to_its_client(sandbox_app: Flask, browser: httpx.Client, app: App) -> None:
    done = authorize(browser, oauth_client(sandbox_app, app))
    thief = register_app(sandbox_app)
    answer = raw_exchange(browser, thief, done)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"


# --- refresh tokens ------------------------------------------------------------------------------


def test_no_refresh_token_without_offline_or_online_access(
    sandbox_app: Flask, browser: httpx.Client, app: App
) -> None:
    client = oauth_client(sandbox_app, app)
    token = exchange(client, authorize(browser, client, f"launch/patient {LAB}"))
    assert "refresh_token" not in token
    token = exchange(client, authorize(browser, client, f"launch/patient online_access {LAB}"))
    assert token["refresh_token"]


def test_refresh_rotation(sandbox_app: Flask, browser: httpx.Client, app: App, who: Login) -> None:
    client = oauth_client(sandbox_app, app)
    first = exchange(client, authorize(browser, client))
    second = client.refresh_token(TOKEN, refresh_token=first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["scope"] == first["scope"]
    assert second["patient"] == who.patient_id
    assert second["need_patient_banner"] is True
    assert second["smart_style_url"] == first["smart_style_url"]
    with pytest.raises(OAuthError) as refused:
        client.refresh_token(TOKEN, refresh_token=first["refresh_token"])
    assert refused.value.error == "invalid_grant"
    third = client.refresh_token(TOKEN, refresh_token=second["refresh_token"])
    assert third["refresh_token"] not in (first["refresh_token"], second["refresh_token"])


def test_refresh_may_narrow_but_not_widen(
    sandbox_app: Flask, browser: httpx.Client, app: App
) -> None:
    client = oauth_client(sandbox_app, app)
    first = exchange(client, authorize(browser, client))
    narrower = client.refresh_token(
        TOKEN, refresh_token=first["refresh_token"], scope="launch/patient offline_access"
    )
    assert narrower["scope"] == "launch/patient offline_access"
    with pytest.raises(OAuthError) as refused:
        client.refresh_token(
            TOKEN,
            refresh_token=narrower["refresh_token"],
            scope="launch/patient offline_access patient/*.rs",
        )
    assert refused.value.error == "invalid_scope"


def test_refresh_token_belongs_to_its_client(
    sandbox_app: Flask, browser: httpx.Client, app: App
) -> None:
    client = oauth_client(sandbox_app, app)
    first = exchange(client, authorize(browser, client))
    thief = oauth_client(sandbox_app, register_app(sandbox_app))
    with pytest.raises(OAuthError) as refused:
        thief.refresh_token(TOKEN, refresh_token=first["refresh_token"])
    assert refused.value.error == "invalid_grant"


# --- id_token ------------------------------------------------------------------------------------


def test_id_token_verifies_with_the_published_jwks(
    sandbox_app: Flask, browser: httpx.Client, app: App, who: Login
) -> None:
    client = oauth_client(sandbox_app, app)
    token = exchange(client, authorize(browser, client, nonce="n-0123456789"))
    conf = browser.get("/fhir/.well-known/openid-configuration").json()
    keys = KeySet.import_key_set(browser.get(conf["jwks_uri"]).json())
    decoded = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
    assert decoded.header["alg"] == "RS256"
    assert decoded.header["kid"] == keys.keys[0].kid
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": FHIR_BASE},
        aud={"essential": True, "value": app.client_id},
        nonce={"essential": True, "value": "n-0123456789"},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    ).validate(decoded.claims)
    assert decoded.claims["fhirUser"] == f"{FHIR_BASE}/Patient/{who.patient_id}"
    assert decoded.claims["exp"] > time.time()


def test_id_token_only_with_openid_and_fhir_user_only_when_granted(
    sandbox_app: Flask, browser: httpx.Client, app: App
) -> None:
    client = oauth_client(sandbox_app, app)
    token = exchange(client, authorize(browser, client, f"launch/patient fhirUser {LAB}"))
    assert "id_token" not in token
    token = exchange(client, authorize(browser, client, f"openid launch/patient {LAB}"))
    claims = jwt.decode(token["id_token"], sandbox_app.extensions["sandbox_signing_key"]).claims
    assert "fhirUser" not in claims and "nonce" not in claims
    # Unticking "Know who you are" drops the id_token.
    done = authorize(browser, client, f"openid fhirUser launch/patient {LAB}", untick=("openid",))
    token = exchange(client, done)
    assert "id_token" not in token and "openid" not in token["scope"]


# --- lifetimes and faults ------------------------------------------------------------------------


@pytest.mark.usefixtures("no_faults")
def test_token_lifetime_fault(sandbox_app: Flask, browser: httpx.Client, app: App) -> None:
    client = oauth_client(sandbox_app, app)
    set_fault(browser, "token_lifetime", value=5, remaining=1)
    token = exchange(client, authorize(browser, client))
    assert token["expires_in"] == 5
    row = session_rows(
        sandbox_app,
        sa.select(Token).where(
            Token.access_token_hash == hashlib.sha256(token["access_token"].encode()).hexdigest()
        ),
    )[0]
    assert row.expires_in == 5
    # The fault was for one token only.
    assert exchange(client, authorize(browser, client))["expires_in"] == 3600


@pytest.mark.usefixtures("no_faults")
def test_no_refresh_token_fault(sandbox_app: Flask, browser: httpx.Client, app: App) -> None:
    client = oauth_client(sandbox_app, app)
    set_fault(browser, "no_refresh_token")
    token = exchange(client, authorize(browser, client))
    assert "offline_access" in token["scope"]
    assert "refresh_token" not in token


def test_unsupported_grant_type(browser: httpx.Client, app: App) -> None:
    answer = browser.post(
        TOKEN, data={"grant_type": "client_credentials", "client_id": app.client_id}
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "unsupported_grant_type"


def test_token_endpoint_is_post_only(http: httpx.Client) -> None:
    assert http.get(TOKEN).status_code == 405


def test_tokens_codes_and_secrets_are_never_logged(
    sandbox_app: Flask, browser: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = register_app(sandbox_app, "confidential-symmetric")
    client = oauth_client(sandbox_app, app)
    done = authorize(browser, client)
    token = exchange(client, done)
    refreshed = client.refresh_token(TOKEN, refresh_token=token["refresh_token"])
    secrets_seen = [
        query(done.callback)["code"],
        done.verifier,
        app.secret,
        token["access_token"],
        token["refresh_token"],
        token["id_token"],
        refreshed["access_token"],
        refreshed["refresh_token"],
    ]
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for value in secrets_seen:
        assert value and value not in logged
