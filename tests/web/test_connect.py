"""The connect views: launch checks, callback errors, ownership of connections, live status."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import RSAKey

from portal.accounts import service
from portal.extensions import db
from portal.models import Account, EhrConnection, SyncRun
from portal.registry import upsert_ehr
from portal.smart import discovery, style
from portal.smart.tokens import set_client_secret
from tests.sessions import begin

FHIR = "https://ehr.example/fhir"
SMART_CONFIG = {
    "issuer": FHIR,
    "authorization_endpoint": "https://ehr.example/auth/authorize",
    "token_endpoint": "https://ehr.example/auth/token",
    "code_challenge_methods_supported": ["S256"],
    "capabilities": ["launch-ehr", "launch-standalone", "permission-v2", "client-public"],
}


@pytest.fixture
def outbound(app: Flask) -> list[httpx.Request]:
    """Every request the portal sends to an EHR (answered by a fake EHR)."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/.well-known/smart-configuration"):
            return httpx.Response(200, json=SMART_CONFIG)
        return httpx.Response(404)

    app.extensions["smart"].transport = httpx.MockTransport(handle)
    discovery.clear_cache()
    return seen


def sign_in_as(app: Flask, client: FlaskClient, email: str) -> int:
    with app.app_context():
        account = service.create_account(db.session, email, "correct horse battery")
        db.session.commit()
        account_id = account.id
    with client.session_transaction() as s:
        begin(s, account_id)
    return account_id


def register(app: Flask) -> int:
    with app.app_context():
        ehr = upsert_ehr(db.session, name="Example EHR", fhir_base=FHIR, client_id="portal")
        db.session.commit()
        return ehr.id


def test_launch_needs_iss_and_launch(client: FlaskClient, outbound: list[httpx.Request]) -> None:
    answer = client.get("/launch?iss=" + FHIR)
    assert answer.status_code == 400
    assert "opened by your clinic" in answer.text
    assert outbound == []


def test_unknown_iss_is_refused_before_any_request(
    app: Flask, client: FlaskClient, outbound: list[httpx.Request]
) -> None:
    register(app)
    answer = client.get("/launch", query_string={"iss": "https://evil.example/fhir", "launch": "x"})
    assert answer.status_code == 400
    assert "not registered" in answer.text
    assert outbound == []


def test_launch_redirects_to_the_ehr_with_a_complete_request(
    app: Flask, client: FlaskClient, outbound: list[httpx.Request]
) -> None:
    register(app)
    answer = client.get("/launch", query_string={"iss": FHIR, "launch": "abc123"})
    assert answer.status_code == 302
    url = urlsplit(answer.headers["Location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == SMART_CONFIG["authorization_endpoint"]
    params = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert params["response_type"] == "code"
    assert params["client_id"] == "portal"
    assert params["redirect_uri"] == "http://127.0.0.1:5000/oauth/callback"
    assert params["aud"] == FHIR
    assert params["launch"] == "abc123"
    assert params["code_challenge_method"] == "S256"
    assert len(params["state"]) >= 22 and params["nonce"]
    assert "launch" in params["scope"].split()
    # Nothing readable in the browser's cookie but a random binding.
    with client.session_transaction() as s:
        assert set(s) == {"oauth_binding"}
    assert [r.url.path for r in outbound] == ["/fhir/.well-known/smart-configuration"]


@pytest.mark.parametrize(
    "query",
    [{}, {"code": "abc"}, {"state": "forged", "code": "abc"}, {"state": "forged", "error": "x"}],
)
def test_callback_with_missing_or_unknown_state_is_refused(
    client: FlaskClient, outbound: list[httpx.Request], query: dict[str, str]
) -> None:
    answer = client.get("/oauth/callback", query_string=query)
    assert answer.status_code == 400
    assert "start connecting again" in answer.text
    assert outbound == []  # no code exchange was tried


def test_callback_error_is_explained_and_the_state_is_spent(
    app: Flask, client: FlaskClient, outbound: list[httpx.Request]
) -> None:
    register(app)
    start = client.get("/launch", query_string={"iss": FHIR, "launch": "abc123"})
    state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
    denied = client.get("/oauth/callback", query_string={"state": state, "error": "access_denied"})
    assert denied.status_code == 403
    assert "You chose not to share your record" in denied.text
    again = client.get("/oauth/callback", query_string={"state": state, "code": "abc"})
    assert again.status_code == 400  # single use
    assert not any(r.url.path.endswith("/token") for r in outbound)


def test_state_from_another_browser_is_refused(
    app: Flask, client: FlaskClient, outbound: list[httpx.Request]
) -> None:
    register(app)
    start = client.get("/launch", query_string={"iss": FHIR, "launch": "abc123"})
    state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
    other = app.test_client()
    answer = other.get("/oauth/callback", query_string={"state": state, "code": "abc"})
    assert answer.status_code == 400
    assert not any(r.url.path.endswith("/token") for r in outbound)


@pytest.mark.parametrize("path", ["/connect", "/sync/status", "/connect/1"])
def test_connect_pages_need_sign_in(client: FlaskClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/signin?next=")


def test_connections_of_others_are_out_of_reach(app: Flask, client: FlaskClient) -> None:
    ehr_id = register(app)
    other = sign_in_as(app, app.test_client(), "other@example.org")
    with app.app_context():
        conn = EhrConnection(account_id=other, ehr_server_id=ehr_id, patient_id="p1")
        db.session.add(conn)
        db.session.commit()
        conn_id = conn.id
    sign_in_as(app, client, "me@example.org")
    for action in ("sync", "disconnect"):
        assert client.post(f"/connections/{conn_id}/{action}").status_code == 403
        assert client.post(f"/connections/{conn_id + 999}/{action}").status_code == 404
    with app.app_context():
        assert db.session.get(EhrConnection, conn_id).status == "active"  # type: ignore[union-attr]
        assert db.session.query(SyncRun).count() == 0
    assert "Example EHR" not in client.get("/connect").text.split("Connect a clinic")[0]


def test_sync_status_polls_only_while_syncing(app: Flask, client: FlaskClient) -> None:
    ehr_id = register(app)
    me = sign_in_as(app, client, "me@example.org")
    with app.app_context():
        conn = EhrConnection(account_id=me, ehr_server_id=ehr_id, patient_id="p1")
        db.session.add(conn)
        db.session.flush()
        run = SyncRun(
            connection_id=conn.id,
            status="running",
            progress={"labs": {"fetched": 12, "done": False, "quarantined": 0, "error": None}},
        )
        db.session.add(run)
        db.session.commit()
        run_id = run.id
    fragment = client.get("/sync/status", headers={"HX-Request": "true"})
    assert "HX-Request" in fragment.headers["Vary"]
    assert "<html" not in fragment.text
    assert 'hx-trigger="every 2s"' in fragment.text
    assert "Lab results: 12" in fragment.text
    with app.app_context():
        run = db.session.get(SyncRun, run_id)
        assert run is not None
        run.status = "incomplete"
        run.error = "Example EHR stopped answering."
        db.session.commit()
    done = client.get("/sync/status", headers={"HX-Request": "true"})
    assert "hx-trigger" not in done.text
    assert "did not finish: Example EHR stopped answering." in done.text


def test_a_watching_page_reloads_when_the_sync_ends(app: Flask, client: FlaskClient) -> None:
    ehr_id = register(app)
    me = sign_in_as(app, client, "me@example.org")
    with app.app_context():
        conn = EhrConnection(account_id=me, ehr_server_id=ehr_id, patient_id="p1")
        db.session.add(conn)
        db.session.flush()
        run = SyncRun(connection_id=conn.id, status="running", progress={})
        db.session.add(run)
        db.session.commit()
        run_id = run.id
    htmx = {"HX-Request": "true"}
    busy = client.get("/sync/status?watch=1", headers=htmx)
    assert "HX-Refresh" not in busy.headers
    assert 'hx-get="/sync/status?watch=1"' in busy.text
    with app.app_context():
        run = db.session.get(SyncRun, run_id)
        assert run is not None
        run.status = "complete"
        db.session.commit()
    assert client.get("/sync/status?watch=1", headers=htmx).headers["HX-Refresh"] == "true"
    assert "HX-Refresh" not in client.get("/sync/status", headers=htmx).headers


def test_ehr_style_is_served_checked_and_only_to_its_owner(
    app: Flask, client: FlaskClient, outbound: list[httpx.Request]
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        outbound.append(request)
        return httpx.Response(200, json={"color_highlight": "#3a3f7a", "color_text": "x;}"})

    app.extensions["smart"].transport = httpx.MockTransport(handle)
    app.extensions["smart"].resolver = lambda _host, _port: ["93.184.216.34"]  # ehr.example
    style.clear_cache()
    ehr_id = register(app)
    me = sign_in_as(app, client, "me@example.org")
    with app.app_context():
        conn = EhrConnection(
            account_id=me,
            ehr_server_id=ehr_id,
            patient_id="p1",
            smart_style_url="https://ehr.example/style.json",
        )
        db.session.add(conn)
        db.session.commit()
        conn_id = conn.id
    page = client.get("/connect")
    assert f'<link rel="stylesheet" href="/style/{conn_id}.css">' in page.text
    css = client.get(f"/style/{conn_id}.css")
    assert css.mimetype == "text/css"
    assert "--accent: #3a3f7a;" in css.text and "x;}" not in css.text
    stranger = app.test_client()
    sign_in_as(app, stranger, "stranger@example.org")
    assert stranger.get(f"/style/{conn_id}.css").status_code == 403
    assert "/style/" not in stranger.get("/connect").text
    style.clear_cache()


def test_ehr_style_from_another_host_is_never_fetched(
    app: Flask, client: FlaskClient, outbound: list[httpx.Request]
) -> None:
    """The token response's smart_style_url is the EHR's word: the view fetches it only from
    the EHR's own origins (tests/smart/test_style.py has the rest)."""
    app.extensions["smart"].resolver = lambda _host, _port: ["93.184.216.34"]
    style.clear_cache()
    ehr_id = register(app)
    me = sign_in_as(app, client, "me@example.org")
    with app.app_context():
        conn = EhrConnection(
            account_id=me,
            ehr_server_id=ehr_id,
            patient_id="p1",
            smart_style_url="http://169.254.169.254/latest/meta-data/",
        )
        db.session.add(conn)
        db.session.commit()
        conn_id = conn.id
    css = client.get(f"/style/{conn_id}.css")
    assert css.status_code == 200 and css.text == ""
    assert [r.url.host for r in outbound] == ["ehr.example"]  # its SMART configuration only
    style.clear_cache()


def test_signed_in_header_offers_clinics_and_sign_out(app: Flask, client: FlaskClient) -> None:
    assert "Sign out" not in client.get("/").text
    sign_in_as(app, client, "me@example.org")
    page = client.get("/").text
    assert 'href="/connect"' in page and "Sign out" in page


def test_every_page_may_be_framed_only_by_registered_ehrs(app: Flask, client: FlaskClient) -> None:
    register(app)
    for path in ("/", "/signin", "/launch"):
        csp = client.get(path).headers["Content-Security-Policy"]
        assert "frame-ancestors 'self' https://ehr.example" in csp, path
        assert "form-action 'self'" in csp


def test_connected_clinics_are_marked_in_the_connect_list(app: Flask, client: FlaskClient) -> None:
    ehr_id = register(app)
    me = sign_in_as(app, client, "me@example.org")
    offer = client.get("/connect").text.split("Connect a clinic")[1]
    assert 'aria-label="Connect Example EHR"' in offer
    with app.app_context():
        db.session.add(EhrConnection(account_id=me, ehr_server_id=ehr_id, patient_id="p1"))
        db.session.commit()
    offer = client.get("/connect").text.split("Connect a clinic")[1]
    assert 'aria-label="Connect Example EHR"' not in offer
    assert '<span class="badge">Connected</span>' in offer


# --- when connecting fails: words by cause, and a log line for the clinic's IT team ----------

CODE = "code-that-must-not-be-logged-1234"
SECRET = "client-secret-that-must-not-be-logged-5678"
ACCESS_TOKEN = "access-token-that-must-not-be-logged-9012"
PATIENT_WORDS = {
    "refused": "You chose not to share your record",
    "setup": "Example EHR does not accept the portal's sign-in right now. This is a set-up "
    "problem on their side or ours, so trying again will not help. Please tell Example EHR",
    "temporary": "Please try again in a few minutes.",
    "restart": "Please start connecting again.",
    "nonsense": "Example EHR answered the portal's sign-in with something the portal cannot use",
    "clinician": "The portal shows patients their own health record, so it cannot be opened "
    "from a clinician's sign-in at Example EHR.",
}
STATUS = {
    "refused": 403,
    "setup": 502,
    "temporary": 503,
    "restart": 400,
    "nonsense": 502,
    "clinician": 403,
}


class FakeEhr:
    """A third-party SMART server: discovery, a JWKS, and a token endpoint that answers as
    told (`token`: a response, or an exception to raise as the transport would)."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, {"alg": "RS256", "use": "sig"}, auto_kid=True)
        self.discovery: Callable[[httpx.Request], httpx.Response] | None = None
        self.token: Callable[[httpx.Request], httpx.Response] = lambda r: httpx.Response(500)
        self.sent: list[httpx.Request] = []
        self.nonces: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        if request.url.path.endswith("/.well-known/smart-configuration"):
            if self.discovery is not None:
                return self.discovery(request)
            return httpx.Response(200, json={**SMART_CONFIG, "jwks_uri": JWKS_URI})
        if str(request.url) == JWKS_URI:
            return httpx.Response(200, json={"keys": [self.key.as_dict(private=False)]})
        if str(request.url) == SMART_CONFIG["token_endpoint"]:
            return self.token(request)
        return httpx.Response(404)

    def id_token(self, nonce: str, fhir_user: str) -> str:
        now = int(time.time())
        claims = {
            "iss": FHIR,
            "aud": "portal",
            "sub": "clinician-7",
            "fhirUser": fhir_user,
            "nonce": nonce,
            "iat": now,
            "exp": now + 300,
        }
        header = {"alg": "RS256", "kid": self.key.kid}
        return jwt.encode(header, claims, self.key, algorithms=["RS256"])


JWKS_URI = "https://ehr.example/auth/jwks"


@pytest.fixture
def fake_ehr(app: Flask) -> FakeEhr:
    ehr = FakeEhr()
    app.extensions["smart"].transport = httpx.MockTransport(ehr.handle)
    discovery.clear_cache()
    with app.app_context():
        registered = upsert_ehr(
            db.session,
            name="Example EHR",
            fhir_base=FHIR,
            client_id="portal",
            client_type="confidential-symmetric",
        )
        set_client_secret(registered, SECRET)
        db.session.commit()
    return ehr


def raising(exc: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("the EHR did not answer", request=request)

    return handler


def token_answer(status: int, **kwargs: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, **kwargs)


# (callback error, token endpoint answer, discovery answer) -> cause, logged OAuth error, status
FAILURES: dict[str, tuple[str | None, Any, Any, str, str, int | None]] = {
    "patient refused": ("access_denied", None, None, "refused", "access_denied", None),
    "unknown client": ("invalid_client", None, None, "setup", "invalid_client", None),
    "client not allowed": ("unauthorized_client", None, None, "setup", "unauthorized_client", None),
    "scope not registered": ("invalid_scope", None, None, "setup", "invalid_scope", None),
    "wrong redirect URI": ("invalid_request", None, None, "setup", "invalid_request", None),
    "authorize server error": ("server_error", None, None, "temporary", "server_error", None),
    "token: client refused": (
        None,
        token_answer(401, json={"error": "invalid_client", "error_description": "bad secret"}),
        None,
        "setup",
        "invalid_client",
        401,
    ),
    "token: 401 page": (
        None,
        token_answer(401, text="<html>Unauthorized</html>"),
        None,
        "setup",
        "-",
        401,
    ),
    "token: scope refused": (
        None,
        token_answer(400, json={"error": "invalid_scope"}),
        None,
        "setup",
        "invalid_scope",
        400,
    ),
    "token: code expired": (
        None,
        token_answer(400, json={"error": "invalid_grant"}),
        None,
        "restart",
        "invalid_grant",
        400,
    ),
    "token: 500 page": (None, token_answer(500, text="oops"), None, "temporary", "-", 500),
    "token: unavailable": (
        None,
        token_answer(503, json={"error": "temporarily_unavailable"}),
        None,
        "temporary",
        "temporarily_unavailable",
        503,
    ),
    "token: timeout": (None, raising(httpx.ReadTimeout), None, "temporary", "-", None),
    "token: refused connection": (None, raising(httpx.ConnectError), None, "temporary", "-", None),
    "token: not JSON": (None, token_answer(200, text="<html>"), None, "nonsense", "-", 200),
    "token: no access token": (
        None,
        token_answer(200, json={"token_type": "Bearer", "scope": "launch"}),
        None,
        "nonsense",
        "-",
        200,
    ),
    "discovery: refused connection": (
        None,
        None,
        raising(httpx.ConnectError),
        "temporary",
        "-",
        None,
    ),
    "discovery: timeout": (None, None, raising(httpx.ConnectTimeout), "temporary", "-", None),
    "discovery: 503": (None, None, token_answer(503), "temporary", "-", 503),
    "discovery: 404": (None, None, token_answer(404), "setup", "-", 404),
    "discovery: nonsense": (None, None, token_answer(200, text="<html>"), "nonsense", "-", 200),
}


def clinician_token(fake: FakeEhr, fhir_user: str, with_patient: bool):
    def answer(request: httpx.Request) -> httpx.Response:
        (nonce,) = fake.nonces
        body = {
            "access_token": ACCESS_TOKEN,
            "token_type": "Bearer",
            "scope": "launch openid fhirUser patient/*.rs",
            "expires_in": 3600,
            "id_token": fake.id_token(nonce, fhir_user),
        }
        if with_patient:
            body["patient"] = "p-in-the-chart"
        return httpx.Response(200, json=body)

    return answer


def main_text(html: str) -> str:
    return html.split('<main id="main">', 1)[1].split("</main>", 1)[0]


def assert_plain_words(page: str, reference: str) -> None:
    """Nothing a patient cannot read: no exception names, HTTP codes or OAuth terms."""
    text = re.sub(r"<[^>]+>", " ", main_text(page)).replace(reference, "")
    assert not re.search(r"\b[1-5]\d\d\b", text), text
    assert not re.search(r"[A-Z][a-z]+(Error|Denied|Unavailable|Refused|Rejected)", text), text
    assert not re.search(r"oauth|invalid_|_denied|_error|unauthorized|token|scope", text, re.I)


def run_failure(client: FlaskClient, fake: FakeEhr, name: str):
    error, token, discovered, *_ = FAILURES.get(name, (None, None, None))
    fake.discovery = discovered
    if token is not None:
        fake.token = token
    start = client.get("/launch", query_string={"iss": FHIR, "launch": "abc123"})
    if start.status_code != 302:
        return start, {}
    params = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
    fake.nonces = [params["nonce"]]
    callback = {"state": params["state"]}
    if error:
        callback |= {"error": error, "error_description": f"redirect_uri {CODE} is wrong"}
    else:
        callback["code"] = CODE
    return client.get("/oauth/callback", query_string=callback), params


@pytest.mark.parametrize("name", list(FAILURES))
def test_failed_connection_is_explained_by_cause_and_logged_for_the_it_team(
    name: str,
    app: Flask,
    client: FlaskClient,
    fake_ehr: FakeEhr,
    caplog: pytest.LogCaptureFixture,
) -> None:
    *_, cause, oauth_error, http_status = FAILURES[name]
    with caplog.at_level(logging.INFO):
        answer, params = run_failure(client, fake_ehr, name)
    # The patient's page: the cause in words, the right status, a reference, no jargon.
    assert answer.status_code == STATUS[cause]
    page = answer.text
    assert PATIENT_WORDS[cause] in page.replace("&#39;", "'")
    found = re.search(r'class="reference">([A-Z]{4}-[A-Z]{4})<', page)
    assert found, page
    reference = found.group(1)
    assert_plain_words(page, reference)
    # The log: one WARNING with the reference, step, OAuth error, HTTP status and EHR ...
    (line,) = [r.getMessage() for r in caplog.records if reference in r.getMessage()]
    (record,) = [r for r in caplog.records if reference in r.getMessage()]
    assert record.levelno == logging.WARNING
    step = (
        "discovery"
        if name.startswith("discovery")
        else "token"
        if name.startswith("token")
        else "authorize"
    )
    assert f"step={step}" in line
    assert f"error={oauth_error}" in line
    assert f"http_status={http_status or '-'}" in line
    assert "ehr=1 (Example EHR)" in line or re.search(r"ehr=\d+ \(Example EHR\)", line)
    # ... and never a code, token, secret, verifier, state, nonce or the EHR's free text.
    sent = [r for r in fake_ehr.sent if str(r.url) == SMART_CONFIG["token_endpoint"]]
    verifiers = [parse_qs(r.content.decode())["code_verifier"][0] for r in sent]
    everything = "\n".join(r.getMessage() for r in caplog.records)
    secrets = [CODE, SECRET, ACCESS_TOKEN, *verifiers]
    secrets += [params[k] for k in ("state", "nonce", "code_challenge") if k in params]
    for secret in secrets:
        assert secret not in everything, secret
    assert "redirect_uri" not in everything  # the EHR's error_description
    with app.app_context():
        assert db.session.query(EhrConnection).count() == 0
        assert db.session.query(Account).count() == 0


@pytest.mark.parametrize(
    ("fhir_user", "with_patient"),
    [
        (f"{FHIR}/Practitioner/7", False),
        ("PractitionerRole/7", False),
        (f"{FHIR}/Practitioner/7", True),  # launched from a patient's chart
    ],
)
def test_a_clinicians_launch_is_told_in_words_that_the_portal_is_for_patients(
    fhir_user: str,
    with_patient: bool,
    app: Flask,
    client: FlaskClient,
    fake_ehr: FakeEhr,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_ehr.token = clinician_token(fake_ehr, fhir_user, with_patient)
    answer, _ = run_failure(client, fake_ehr, "clinician")
    assert answer.status_code == 403
    assert PATIENT_WORDS["clinician"] in answer.text.replace("&#39;", "'")
    reference = re.search(r'class="reference">([A-Z]{4}-[A-Z]{4})<', answer.text)
    assert reference
    assert_plain_words(answer.text, reference.group(1))
    (line,) = [r.getMessage() for r in caplog.records if reference.group(1) in r.getMessage()]
    assert "step=token" in line and "ClinicianSignIn" in line
    assert ACCESS_TOKEN not in line and CODE not in line
    with client.session_transaction() as s:
        assert "account_id" not in s  # nobody was signed in
    with app.app_context():
        assert db.session.query(EhrConnection).count() == 0
