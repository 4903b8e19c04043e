"""The portal app: front page, health check, headers, errors."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from portal.registry import upsert_ehr
from tests.sessions import begin


def test_home_without_clinics_has_an_empty_state(client: FlaskClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "No clinic is set up yet" in page.text


def test_home_lists_registered_ehrs_escaped(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        upsert_ehr(
            db.session,
            name="St. Mary's <Clinic>",
            fhir_base="https://ehr.example/fhir",
            client_id="portal",
        )
        db.session.commit()
    page = client.get("/")
    assert "St. Mary&#39;s &lt;Clinic&gt;" in page.text
    assert "<Clinic>" not in page.text
    assert "https://ehr.example/fhir" not in page.text  # no FHIR jargon for patients


def test_demo_links_shown_only_when_configured(app: Flask, client: FlaskClient) -> None:
    assert "Demo" not in client.get("/").text
    app.config["DEMO_LINKS"] = [("Launch simulator", "http://127.0.0.1:5001/launch")]
    page = client.get("/")
    assert 'href="http://127.0.0.1:5001/launch"' in page.text


def test_healthz_checks_the_database(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}


def test_security_headers(client: FlaskClient) -> None:
    headers = client.get("/").headers
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_unknown_page_gets_a_friendly_404(client: FlaskClient) -> None:
    page = client.get("/no-such-page")
    assert page.status_code == 404
    assert "Back to the start page" in page.text


def test_session_cookie_name_differs_from_sandbox(app: Flask) -> None:
    # Cookies are not isolated by port: the portal and the sandbox EHRs share 127.0.0.1.
    assert app.config["SESSION_COOKIE_NAME"] == "portal_session"


def test_home_offers_a_way_in(app: Flask, client: FlaskClient) -> None:
    page = client.get("/").text
    assert 'href="/signup"' in page and "Create an account" in page
    assert "Go to your record" not in page
    with app.app_context():
        from portal.accounts import service

        account = service.create_account(db.session, "ana@example.org", "correct horse battery")
        db.session.commit()
        account_id = account.id
    with client.session_transaction() as s:
        begin(s, account_id)
    page = client.get("/").text
    assert 'href="/records/"' in page and "Go to your record" in page
    assert "Create an account" not in page
