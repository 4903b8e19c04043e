"""The authorization request: PKCE, redirect URI, aud, scopes, launch, login and consent."""

from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import urlencode

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask import Flask

from portal.db import utcnow
from portal.sandbox.models import LaunchContext
from tests.sandbox.flows import (
    AUTHORIZE,
    FHIR_BASE,
    LAB,
    READ_SCOPE,
    REDIRECT_URI,
    App,
    Authorized,
    Login,
    authorize,
    consent,
    db,
    exchange,
    form_with,
    login,
    oauth_client,
    patient_login,
    query,
    register_app,
)

ALLERGIES = "patient/AllergyIntolerance.rs"


@pytest.fixture
def app(sandbox_app: Flask) -> App:
    return register_app(sandbox_app, name="Health Diary")


@pytest.fixture
def who(sandbox_app: Flask, loaded) -> Login:
    return patient_login(sandbox_app, loaded["christin_stiedemann"].patient_id)


@pytest.fixture
def browser(http: httpx.Client, who: Login) -> httpx.Client:
    assert login(http, who).status_code == 303
    return http


def authorize_url(app: App, **params: str | None) -> tuple[str, str]:
    """An authorization URL with sensible defaults; a None value leaves the parameter out."""
    verifier = secrets.token_urlsafe(48)
    state = secrets.token_urlsafe(16)
    values: dict[str, str | None] = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": app.redirect_uri,
        "scope": READ_SCOPE,
        "state": state,
        "aud": FHIR_BASE,
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    values.update(params)
    return AUTHORIZE + "?" + urlencode({k: v for k, v in values.items() if v is not None}), state


def error_redirect(answer: httpx.Response, state: str) -> str:
    """The `error` of a redirect back to the app, checking that the state came back too."""
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    params = query(location)
    assert params["state"] == state
    assert "code" not in params
    return params["error"]


# --- PKCE ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pkce",
    [
        {"code_challenge": None, "code_challenge_method": None},
        {"code_challenge": None},
        {"code_challenge_method": None},
        {"code_challenge_method": "plain"},
        {"code_challenge": "x" * 43, "code_challenge_method": "plain"},
        {"code_challenge_method": "s256"},
        {"code_challenge": "too-short"},
    ],
)
def test_pkce_s256_is_required(browser: httpx.Client, app: App, pkce: dict) -> None:
    url, state = authorize_url(app, **pkce)
    assert error_redirect(browser.get(url), state) == "invalid_request"


def test_pkce_is_checked_before_login(http: httpx.Client, app: App) -> None:
    url, state = authorize_url(app, code_challenge=None, code_challenge_method=None)
    assert error_redirect(http.get(url), state) == "invalid_request"


# --- client and redirect URI: errors are pages, never redirects ----------------------------------


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://app.test/callback/",
        "https://app.test/callback?x=1",
        "https://app.test/Callback",
        "http://app.test/callback",
        "https://evil.test/callback",
        "https://app.test.evil.test/callback",
        "https://app.test:444/callback",
    ],
)
def test_redirect_uri_must_match_exactly(
    browser: httpx.Client, app: App, redirect_uri: str
) -> None:
    url, _ = authorize_url(app, redirect_uri=redirect_uri)
    answer = browser.get(url)
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert "not valid" in answer.text
    assert "evil" not in answer.headers.get("location", "")


def test_missing_redirect_uri_is_refused(browser: httpx.Client, app: App) -> None:
    url, _ = authorize_url(app, redirect_uri=None)
    answer = browser.get(url)
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert "redirect_uri" in answer.text


@pytest.mark.parametrize("client_id", [None, "no-such-app"])
def test_unknown_client_gets_a_page(browser: httpx.Client, app: App, client_id) -> None:
    url, _ = authorize_url(app, client_id=client_id)
    answer = browser.get(url)
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert answer.headers["content-type"].startswith("text/html")
    assert "invalid_client" in answer.text


def test_unsupported_response_type(browser: httpx.Client, app: App) -> None:
    url, state = authorize_url(app, response_type="token")
    assert error_redirect(browser.get(url), state) == "unsupported_response_type"


# --- aud -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "aud", [None, "", "https://other.test/fhir", FHIR_BASE + "/", "http://ehr.test"]
)
def test_aud_must_be_the_fhir_base(browser: httpx.Client, app: App, aud: str | None) -> None:
    url, state = authorize_url(app, aud=aud)
    assert error_redirect(browser.get(url), state) == "invalid_request"


# --- state, consent ------------------------------------------------------------------------------


def test_state_is_echoed_with_the_code(browser: httpx.Client, app: App) -> None:
    url, _ = authorize_url(app, state="st-" + "a" * 40)
    answer = consent(browser, url)
    assert answer.status_code == 302
    params = query(answer.headers["location"])
    assert params["state"] == "st-" + "a" * 40
    assert len(params["code"]) >= 40


def test_consent_page_in_plain_words(browser: httpx.Client, app: App) -> None:
    scope = f"openid fhirUser launch/patient offline_access {LAB} {ALLERGIES}"
    url, _ = authorize_url(app, scope=scope)
    page = browser.get(url)
    assert page.status_code == 200
    text = page.text
    assert "Health Diary" in text
    assert "Christin Stiedemann" in text
    assert "Read your lab results" in text
    assert "Read your allergies" in text
    assert "Stay connected when you are not using the app" in text
    assert text.count("Know who you are") == 1  # openid and fhirUser share one line
    form = form_with(text, "decision")
    assert form.checkboxes and all(checked for _, _, checked in form.checkboxes)
    assert {v for _, v in form.buttons} == {"allow", "deny"}
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_consent_page_escapes_the_app_name(sandbox_app: Flask, browser: httpx.Client) -> None:
    app = register_app(sandbox_app, name="O'Brien <b>Health</b>")
    url, _ = authorize_url(app)
    text = browser.get(url).text
    assert "O&#39;Brien &lt;b&gt;Health&lt;/b&gt;" in text
    assert "<b>Health</b>" not in text


def test_deny_redirects_with_access_denied(browser: httpx.Client, app: App) -> None:
    url, state = authorize_url(app)
    assert error_redirect(consent(browser, url, decision="deny"), state) == "access_denied"


def test_consent_form_needs_the_csrf_token(browser: httpx.Client, app: App) -> None:
    url, _ = authorize_url(app)
    form = form_with(browser.get(url).text, "decision")
    for token in (None, "forged"):
        data = form.data(decision="allow")
        if token is None:
            data.pop("csrf_token")
        else:
            data["csrf_token"] = token
        answer = browser.post(form.action, data=data)
        assert answer.status_code == 400
        assert "location" not in answer.headers


def test_token_scope_holds_only_what_the_patient_kept(
    sandbox_app: Flask, browser: httpx.Client, app: App
) -> None:
    client = oauth_client(sandbox_app, app)
    scope = f"openid fhirUser launch/patient {LAB} {ALLERGIES}"
    token = exchange(client, authorize(browser, client, scope, untick=(ALLERGIES,)))
    granted = token["scope"].split()
    assert ALLERGIES not in granted
    assert LAB in granted
    assert "launch/patient" in granted  # launch scopes are kept without asking


def test_posted_scopes_cannot_widen_the_request(
    sandbox_app: Flask, browser: httpx.Client, app: App
) -> None:
    client = oauth_client(sandbox_app, app)
    verifier = secrets.token_urlsafe(48)
    url, state = client.create_authorization_url(
        AUTHORIZE, code_verifier=verifier, scope=f"launch/patient {LAB}", aud=FHIR_BASE
    )
    form = form_with(browser.get(url).text, "decision")
    data = form.data(decision="allow")
    data["kept"] = [*data["kept"], "patient/*.cruds offline_access"]
    answer = browser.post(form.action, data=data)
    done = Authorized(answer.headers["location"], state, verifier)
    assert exchange(client, done)["scope"].split() == ["launch/patient", LAB]


def test_unticking_everything_is_a_denial(browser: httpx.Client, app: App) -> None:
    url, state = authorize_url(app, scope=f"launch/patient {LAB} {ALLERGIES}")
    answer = consent(browser, url, untick=(LAB, ALLERGIES))
    assert error_redirect(answer, state) == "access_denied"


# --- scopes --------------------------------------------------------------------------------------


def test_v1_v2_and_category_scopes_are_accepted(
    sandbox_app: Flask, browser: httpx.Client, app: App
) -> None:
    scope = (
        "launch/patient patient/Patient.read patient/AllergyIntolerance.rs "
        f"{LAB} patient/Condition.rs?category=problem-list-item user/Immunization.read"
    )
    client = oauth_client(sandbox_app, app)
    token = exchange(client, authorize(browser, client, scope))
    assert token["scope"].split() == scope.split()


def test_unknown_and_unregistered_scopes_are_dropped(
    sandbox_app: Flask, browser: httpx.Client
) -> None:
    app = register_app(
        sandbox_app,
        scope=(
            "openid fhirUser launch/patient patient/Observation.rs patient/Patient.read "
            "made/up patient/Observation.xyz"  # registered, but no scope this server knows
        ),
    )
    client = oauth_client(sandbox_app, app)
    scope = (
        f"openid launch/patient {LAB} patient/Patient.read patient/Condition.rs "
        "patient/Observation.cruds made/up system/*.rs patient/Observation.xyz"
    )
    token = exchange(client, authorize(browser, client, scope))
    assert token["scope"].split() == ["openid", "launch/patient", LAB, "patient/Patient.read"]


@pytest.mark.parametrize("scope", [None, "", "made/up other/thing"])
def test_no_grantable_scope_is_invalid_scope(
    browser: httpx.Client, app: App, scope: str | None
) -> None:
    url, state = authorize_url(app, scope=scope)
    assert error_redirect(browser.get(url), state) == "invalid_scope"


# --- launch --------------------------------------------------------------------------------------


def test_launch_scope_needs_a_launch_parameter(browser: httpx.Client, app: App) -> None:
    url, state = authorize_url(app, scope="launch openid patient/*.rs")
    assert error_redirect(browser.get(url), state) == "invalid_request"


def make_launch(sandbox_app: Flask, client_id: str, who: Login, **kwargs) -> str:
    launch_id = secrets.token_urlsafe(16)
    with db(sandbox_app) as session:
        session.add(
            LaunchContext(
                id=launch_id,
                client_id=client_id,
                user_id=who.user_id,
                patient_id=who.patient_id,
                expires_at=kwargs.pop("expires_at", utcnow() + timedelta(minutes=5)),
                **kwargs,
            )
        )
    return launch_id


def test_launch_must_exist_be_fresh_and_belong_to_the_client(
    sandbox_app: Flask, browser: httpx.Client, app: App, who: Login
) -> None:
    other = register_app(sandbox_app)
    launches = {
        "unknown": "no-such-launch",
        "other client": make_launch(sandbox_app, other.client_id, who),
        "expired": make_launch(
            sandbox_app, app.client_id, who, expires_at=utcnow() - timedelta(seconds=1)
        ),
    }
    for case, launch in launches.items():
        url, state = authorize_url(app, scope="launch openid patient/*.rs", launch=launch)
        assert error_redirect(browser.get(url), state) == "invalid_request", case
    good = make_launch(sandbox_app, app.client_id, who)
    url, _ = authorize_url(app, scope="launch openid patient/*.rs", launch=good)
    assert browser.get(url).status_code == 200


def test_launch_for_another_patient_is_refused(
    sandbox_app: Flask, loaded, browser: httpx.Client, app: App
) -> None:
    someone_else = patient_login(sandbox_app, loaded["arron_schamberger"].patient_id)
    launch = make_launch(sandbox_app, app.client_id, someone_else)
    url, _ = authorize_url(app, scope="launch openid patient/*.rs", launch=launch)
    answer = browser.get(url)
    assert answer.status_code == 403
    assert "another patient" in answer.text
    assert "location" not in answer.headers


# --- login on the way ----------------------------------------------------------------------------


def test_signed_out_browser_goes_to_login_and_back(
    http: httpx.Client, app: App, who: Login
) -> None:
    url, _ = authorize_url(app)
    answer = http.get(url)
    assert answer.status_code == 302
    to_login = answer.headers["location"]
    assert to_login.startswith("/auth/login?next=")
    next_url = query(to_login)["next"]
    assert next_url.startswith("/auth/authorize?")
    back = login(http, who, next_url)
    assert back.status_code == 303
    assert back.headers["location"] == next_url
    assert http.get(next_url).status_code == 200  # the consent page


def test_prompt_none_without_a_session_is_login_required(http: httpx.Client, app: App) -> None:
    url, state = authorize_url(app, prompt="none")
    assert error_redirect(http.get(url), state) == "login_required"


def test_nonce_cannot_be_replayed(sandbox_app: Flask, browser: httpx.Client, app: App) -> None:
    client = oauth_client(sandbox_app, app)
    authorize(browser, client, nonce="nonce-once")
    url, state = authorize_url(app, nonce="nonce-once")
    assert error_redirect(browser.get(url), state) == "invalid_request"
