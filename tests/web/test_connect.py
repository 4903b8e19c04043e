"""The connect views: launch checks, callback errors, ownership of connections, live status."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.accounts import service
from portal.extensions import db
from portal.models import EhrConnection, SyncRun
from portal.registry import upsert_ehr
from portal.smart import discovery, style

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
        s["account_id"] = account_id
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
    assert denied.status_code == 400
    assert "Your clinic was not connected" in denied.text
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
