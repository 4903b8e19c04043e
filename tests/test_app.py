"""The portal app: front page, health check, headers, errors."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

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


# ---- HTTP hardening: HSTS, request size ---------------------------------------------------

STRONG = "k3y-" + "aZ9x8Yb7Wc6Vd5Ue4Tf3Sg2Rh1Qi0Pj" * 2
HSTS = "max-age=31536000; includeSubDomains"


def production_app(database_url: str, **config: object) -> Flask:
    from cryptography.fernet import Fernet

    from portal.app import create_app

    app = create_app(
        {
            "ENV": "production",
            "SECRET_KEY": STRONG,
            "TOKEN_KEYS": Fernet.generate_key().decode(),
            "DATABASE_URL": database_url,
            "PUBLIC_URL": "https://portal.example.org",
            "WTF_CSRF_ENABLED": False,
            "MAIL_BACKEND": "smtp",
            "MAIL_SMTP_HOST": "mx.example.org",
            "MAIL_FROM": "portal@example.org",
            **config,
        }
    )

    @app.get("/_test/boom")
    def boom() -> str:
        raise RuntimeError("a bug")

    return app


def test_production_sends_hsts_on_every_response_error_pages_included(database_url: str) -> None:
    app = production_app(database_url, SIGNIN_RATE_LIMIT="1 per minute", RATELIMIT_ENABLED=True)
    client = app.test_client()
    try:
        answers = {
            "page": client.get("/"),
            "not found": client.get("/no-such-page"),
            "wrong method": client.post("/"),
            "server error": client.get("/_test/boom"),
            "too large": client.post("/signin", data={"note": "x" * (2 * 1024 * 1024)}),
        }
        bad = {"email": "x@example.org", "password": "nope nope nope"}
        client.post("/signin", data=bad)
        answers["rate limited"] = client.post("/signin", data=bad)
        codes = {name: answer.status_code for name, answer in answers.items()}
        assert codes == {
            "page": 200,
            "not found": 404,
            "wrong method": 405,
            "server error": 500,
            "too large": 413,
            "rate limited": 429,
        }
        for name, answer in answers.items():
            assert answer.headers["Strict-Transport-Security"] == HSTS, name
            assert "no-store" in answer.headers["Cache-Control"], name
    finally:
        db.engine(app).dispose()


def test_no_hsts_in_development(client: FlaskClient) -> None:
    assert "Strict-Transport-Security" not in client.get("/").headers
    assert "Strict-Transport-Security" not in client.get("/no-such-page").headers


def post_file(client: FlaskClient, url: str, content: bytes) -> TestResponse:
    """A multipart upload as a browser sends it (encoded here: the test client's own encoder
    leaves a temporary file open)."""
    boundary = "portal-test-boundary"
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="scan.pdf"\r\n'
            "Content-Type: application/pdf\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return client.post(url, data=body, content_type=f"multipart/form-data; boundary={boundary}")


@pytest.mark.parametrize("kind", ["form", "file"])
def test_a_too_large_request_gets_a_page_in_the_portals_words(
    app: Flask, client: FlaskClient, kind: str
) -> None:
    two_mb = "x" * (2 * 1024 * 1024)
    if kind == "form":
        answer = client.post("/signin", data={"email": "a@example.org", "password": two_mb})
    else:
        answer = post_file(client, "/signin", two_mb.encode())
    assert answer.status_code == 413
    assert "That was more than the portal accepts in one go" in answer.text
    assert "Request Entity Too Large" not in answer.text and "413" not in answer.text
    assert "no-store" in answer.headers["Cache-Control"]


def test_the_request_size_limit_is_configurable(app: Flask, client: FlaskClient) -> None:
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024
    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024
    answer = post_file(client, "/signin", b"x" * (2 * 1024 * 1024))
    assert answer.status_code == 400  # read, then refused as a sign-in without an email


def test_error_pages_use_the_portals_words(client: FlaskClient) -> None:
    page = client.post("/").text  # 405
    assert "That did not work" in page
    assert "Method Not Allowed" not in page and "405" not in page
