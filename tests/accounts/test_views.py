"""Sign-up, sign-in, sign-out and reset pages, including bad input."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.accounts import service
from portal.app import create_app
from portal.extensions import db
from portal.models import Account

GOOD = {
    "display_name": "Ana O'Neil",
    "email": "ana@example.org",
    "password": "correct horse battery",
    "confirm": "correct horse battery",
}


def signed_in_account(client: FlaskClient) -> int | None:
    with client.session_transaction() as s:
        return s.get("account_id")


def test_sign_up_signs_in(app: Flask, client: FlaskClient) -> None:
    answer = client.post("/signup", data=GOOD)
    assert answer.status_code == 302
    with app.app_context():
        account = db.session.query(Account).one()
        assert account.display_name == "Ana O'Neil"
        assert signed_in_account(client) == account.id


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"email": ""}, "This field is required"),
        ({"email": "not-an-email"}, "Invalid email address"),
        ({"email": "a" * 400 + "@example.org"}, "Field cannot be longer than 320"),
        ({"password": "short", "confirm": "short"}, "at least 10"),
        ({"password": "x" * 2000, "confirm": "x" * 2000}, "between 10 and 1024"),
        ({"confirm": "something else"}, "The passwords differ"),
        ({"display_name": "n" * 300}, "cannot be longer than 200"),
    ],
)
def test_sign_up_bad_input_is_explained_and_nothing_is_stored(
    app: Flask, client: FlaskClient, change: dict[str, str], message: str
) -> None:
    answer = client.post("/signup", data={**GOOD, **change})
    assert answer.status_code == 400
    assert message in answer.text
    with app.app_context():
        assert db.session.query(Account).count() == 0
    assert signed_in_account(client) is None


def test_sign_up_keeps_what_was_typed_except_passwords(client: FlaskClient) -> None:
    answer = client.post("/signup", data={**GOOD, "confirm": "different password"})
    assert 'value="ana@example.org"' in answer.text
    assert "correct horse battery" not in answer.text


def test_script_in_a_name_is_escaped(client: FlaskClient) -> None:
    answer = client.post(
        "/signup", data={**GOOD, "display_name": "<script>alert(1)</script>", "email": "bad"}
    )
    assert "<script>alert(1)</script>" not in answer.text
    assert "&lt;script&gt;" in answer.text


def test_sign_in_and_out(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        service.create_account(db.session, "ana@example.org", "correct horse battery")
        db.session.commit()
    wrong = client.post("/signin", data={"email": "ana@example.org", "password": "nope nope nope"})
    assert wrong.status_code == 400
    assert "Email or password is incorrect." in wrong.text
    assert signed_in_account(client) is None
    ok = client.post(
        "/signin?next=/records/",
        data={"email": "ana@example.org", "password": "correct horse battery"},
    )
    assert ok.status_code == 302 and ok.headers["Location"] == "/records/"
    assert signed_in_account(client) is not None
    client.post("/signout")
    assert signed_in_account(client) is None


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"],
)
def test_sign_in_never_redirects_off_site(app: Flask, client: FlaskClient, target: str) -> None:
    with app.app_context():
        service.create_account(db.session, "ana@example.org", "correct horse battery")
        db.session.commit()
    ok = client.post(
        "/signin",
        query_string={"next": target},
        data={"email": "ana@example.org", "password": "correct horse battery"},
    )
    assert ok.headers["Location"] == "/"


def test_unknown_email_gets_the_same_answer_as_a_wrong_password(
    app: Flask, client: FlaskClient
) -> None:
    with app.app_context():
        service.create_account(db.session, "ana@example.org", "correct horse battery")
        db.session.commit()
    a = client.post("/signin", data={"email": "ana@example.org", "password": "nope nope nope"})
    b = client.post("/signin", data={"email": "who@example.org", "password": "nope nope nope"})
    assert a.status_code == b.status_code == 400

    def strip(text: str) -> str:
        # Typed values and the timestamped CSRF token differ per request, not per account.
        text = re.sub(r'value="[^"]*"', "", text)
        return re.sub(r'"X-CSRFToken": "[^"]*"', "", text)

    assert strip(a.text) == strip(b.text)


def test_reset_flow(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        service.create_account(db.session, "ana@example.org", "correct horse battery")
        db.session.commit()
    answer = client.post("/reset", data={"email": "ana@example.org"})
    assert "If an account exists" in answer.text
    unknown = client.post("/reset", data={"email": "nobody@example.org"})
    assert unknown.text == answer.text  # no account enumeration
    outbox = app.extensions["mail_outbox"]
    assert len(outbox) == 1 and outbox[0][0] == "ana@example.org"
    path = outbox[0][1].split("localhost", 1)[1]
    bad = client.post(path, data={"password": "short", "confirm": "short"})
    assert bad.status_code == 400 and "at least 10" in bad.text
    done = client.post(
        path, data={"password": "a brand new password", "confirm": "a brand new password"}
    )
    assert done.status_code == 302
    again = client.get(path)
    assert again.status_code == 400 and "no longer works" in again.text
    with app.app_context():
        assert service.authenticate(db.session, "ana@example.org", "a brand new password")


def test_sign_in_is_rate_limited(database_url: str) -> None:
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": True,
            "SIGNIN_RATE_LIMIT": "3 per minute",
        }
    )
    client = app.test_client()
    bad = {"email": "x@example.org", "password": "nope nope nope"}
    try:
        codes = [client.post("/signin", data=bad).status_code for _ in range(5)]
        assert codes == [400, 400, 400, 429, 429]
        assert client.get("/signin").status_code == 200  # reading the page is not limited
    finally:
        db.engine(app).dispose()


def test_csrf_is_required_when_enabled(app: Flask, client: FlaskClient) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    answer = client.post("/signup", data=GOOD)
    assert answer.status_code == 400
    with app.app_context():
        assert db.session.query(Account).count() == 0
