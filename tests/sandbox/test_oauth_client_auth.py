"""Client authentication at the token endpoint: HTTP Basic and private_key_jwt (RFC 7523)."""

from __future__ import annotations

import httpx
import pytest
from authlib.integrations.base_client import OAuthError
from flask import Flask
from joserfc.jwk import ECKey, RSAKey

from portal.sandbox.accounts import register_client
from tests.sandbox.flows import (
    TOKEN,
    App,
    Login,
    authorize,
    client_assertion,
    db,
    exchange,
    login,
    oauth_client,
    patient_login,
    query,
    register_app,
)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture
def who(sandbox_app: Flask, loaded) -> Login:
    return patient_login(sandbox_app, loaded["arron_schamberger"].patient_id)


@pytest.fixture
def browser(http: httpx.Client, who: Login) -> httpx.Client:
    login(http, who)
    return http


# --- confidential-symmetric: client_secret_basic -------------------------------------------------


def test_symmetric_client_with_basic_auth(
    sandbox_app: Flask, browser: httpx.Client, who: Login
) -> None:
    app = register_app(sandbox_app, "confidential-symmetric")
    client = oauth_client(sandbox_app, app)
    token = exchange(client, authorize(browser, client))
    assert token["patient"] == who.patient_id
    refreshed = client.refresh_token(TOKEN, refresh_token=token["refresh_token"])
    assert refreshed["access_token"]


def test_symmetric_client_is_refused_without_the_right_secret(
    sandbox_app: Flask, browser: httpx.Client
) -> None:
    app = register_app(sandbox_app, "confidential-symmetric")
    done = authorize(browser, oauth_client(sandbox_app, app))
    code = query(done.callback)["code"]
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": app.redirect_uri,
        "code_verifier": done.verifier,
    }
    attempts = {
        "wrong secret": {"auth": (app.client_id, "not-the-secret")},
        "no authentication": {"data": {**body, "client_id": app.client_id}},
        "secret in the body": {
            "data": {**body, "client_id": app.client_id, "client_secret": app.secret}
        },
    }
    for case, kwargs in attempts.items():
        answer = browser.post(TOKEN, **{"data": body, **kwargs})
        assert answer.status_code in (400, 401), case
        assert answer.json()["error"] == "invalid_client", case
    # The code was not spent by the failed attempts.
    ok = browser.post(TOKEN, data=body, auth=(app.client_id, app.secret))
    assert ok.status_code == 200


# --- confidential-asymmetric: private_key_jwt ----------------------------------------------------


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_private_key_jwt(sandbox_app: Flask, browser: httpx.Client, alg: str) -> None:
    app = register_app(sandbox_app, "confidential-asymmetric")
    client = oauth_client(sandbox_app, app, alg=alg)
    token = exchange(client, authorize(browser, client))
    assert token["access_token"]
    refreshed = client.refresh_token(TOKEN, refresh_token=token["refresh_token"])
    assert refreshed["access_token"] != token["access_token"]


def post_assertion(http: httpx.Client, assertion: str, **extra: str) -> httpx.Response:
    """A token request whose code is bogus: invalid_grant means the client authenticated."""
    return http.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": "bogus-code",
            "redirect_uri": "https://app.test/callback",
            "code_verifier": "v" * 43,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            **extra,
        },
    )


def error_of(answer: httpx.Response) -> str:
    assert answer.status_code in (400, 401)
    return str(answer.json()["error"])


@pytest.fixture
def asym(sandbox_app: Flask) -> App:
    return register_app(sandbox_app, "confidential-asymmetric")


def test_a_valid_assertion_authenticates(http: httpx.Client, asym: App) -> None:
    for alg in ("RS384", "ES384"):
        assertion = client_assertion(asym.keys[alg], asym.client_id, alg=alg)
        assert error_of(post_assertion(http, assertion)) == "invalid_grant"


def test_wrong_key_is_refused(http: httpx.Client, asym: App) -> None:
    real = asym.keys["RS384"]
    impostor = RSAKey.generate_key(2048, {"kid": real.kid, "alg": "RS384"})
    assertion = client_assertion(impostor, asym.client_id)
    assert error_of(post_assertion(http, assertion)) == "invalid_client"
    other_ec = ECKey.generate_key("P-384", {"kid": asym.keys["ES384"].kid})
    assertion = client_assertion(other_ec, asym.client_id, alg="ES384")
    assert error_of(post_assertion(http, assertion)) == "invalid_client"


def test_unknown_kid_is_refused(http: httpx.Client, asym: App) -> None:
    assertion = client_assertion(asym.keys["RS384"], asym.client_id, kid='no-such-"kid"')
    assert error_of(post_assertion(http, assertion)) == "invalid_client"


@pytest.mark.parametrize(
    "aud", ["http://ehr.test/auth/authorize", "http://ehr.test/fhir", "https://other.test/token"]
)
def test_wrong_audience_is_refused(http: httpx.Client, asym: App, aud: str) -> None:
    assertion = client_assertion(asym.keys["RS384"], asym.client_id, aud=aud)
    assert error_of(post_assertion(http, assertion)) == "invalid_client"


def test_expired_assertion_is_refused(http: httpx.Client, asym: App) -> None:
    assertion = client_assertion(asym.keys["RS384"], asym.client_id, exp_in=-120)
    assert error_of(post_assertion(http, assertion)) == "invalid_client"


def test_assertion_living_too_long_is_refused(http: httpx.Client, asym: App) -> None:
    assertion = client_assertion(asym.keys["RS384"], asym.client_id, exp_in=3600)
    assert error_of(post_assertion(http, assertion)) == "invalid_client"


def test_missing_jti_is_refused(http: httpx.Client, asym: App) -> None:
    assertion = client_assertion(asym.keys["RS384"], asym.client_id, jti=None)
    assert error_of(post_assertion(http, assertion)) == "invalid_client"


def test_replayed_jti_is_refused(http: httpx.Client, asym: App) -> None:
    assertion = client_assertion(asym.keys["RS384"], asym.client_id)
    assert error_of(post_assertion(http, assertion)) == "invalid_grant"
    assert error_of(post_assertion(http, assertion)) == "invalid_client"
    # The same jti in a freshly signed assertion is a replay too.
    again = client_assertion(asym.keys["ES384"], asym.client_id, alg="ES384", jti="fixed-jti")
    assert error_of(post_assertion(http, again)) == "invalid_grant"
    again = client_assertion(asym.keys["ES384"], asym.client_id, alg="ES384", jti="fixed-jti")
    assert error_of(post_assertion(http, again)) == "invalid_client"


def test_other_algorithms_are_refused(sandbox_app: Flask, http: httpx.Client) -> None:
    key = RSAKey.generate_key(2048, auto_kid=True)  # no "alg": the key itself allows any
    with db(sandbox_app) as session:
        register_client(
            session,
            client_id="any-alg-app",
            name="Any alg",
            client_type="confidential-asymmetric",
            redirect_uris=["https://app.test/callback"],
            jwks={"keys": [key.as_dict(private=False)]},
        )
    assertion = client_assertion(key, "any-alg-app", alg="RS384")
    assert error_of(post_assertion(http, assertion)) == "invalid_grant"
    for alg in ("RS256", "PS384", "RS512"):
        assertion = client_assertion(key, "any-alg-app", alg=alg)
        assert error_of(post_assertion(http, assertion)) == "invalid_client", alg


def test_issuer_must_be_the_client(http: httpx.Client, asym: App) -> None:
    assertion = client_assertion(asym.keys["RS384"], asym.client_id, issuer="someone-else")
    assert error_of(post_assertion(http, assertion)) == "invalid_client"


def test_public_or_symmetric_clients_cannot_use_assertions(
    sandbox_app: Flask, http: httpx.Client
) -> None:
    key = RSAKey.generate_key(2048, {"alg": "RS384"}, auto_kid=True)
    for kind in ("public", "confidential-symmetric"):
        app = register_app(sandbox_app, kind)
        assertion = client_assertion(key, app.client_id)
        assert error_of(post_assertion(http, assertion)) == "invalid_client", kind


def test_asymmetric_client_must_authenticate(
    sandbox_app: Flask, browser: httpx.Client, asym: App
) -> None:
    done = authorize(browser, oauth_client(sandbox_app, asym))
    answer = browser.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": query(done.callback)["code"],
            "redirect_uri": asym.redirect_uri,
            "code_verifier": done.verifier,
            "client_id": asym.client_id,
        },
    )
    assert error_of(answer) == "invalid_client"


def test_authlib_client_default_assertion_lifetime_is_refused(
    sandbox_app: Flask, browser: httpx.Client, asym: App
) -> None:
    """authlib's stock PrivateKeyJWT signs for an hour; SMART allows five minutes."""
    from authlib.oauth2.rfc7523 import PrivateKeyJWT

    client = oauth_client(sandbox_app, asym)
    client.register_client_auth_method(PrivateKeyJWT(TOKEN, alg="RS384"))
    with pytest.raises(OAuthError) as refused:
        exchange(client, authorize(browser, client))
    assert refused.value.error == "invalid_client"
