"""Sign-up, sign-in, sign-out and reset pages, including bad input."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.accounts import service
from portal.app import create_app
from portal.extensions import db
from portal.jobs import queue
from portal.models import Account, PasswordReset
from portal.notify.mail import Message

GOOD = {
    "display_name": "Ana O'Neil",
    "email": "ana@example.org",
    "password": "correct horse battery",
    "confirm": "correct horse battery",
}


def signed_in_account(client: FlaskClient) -> int | None:
    with client.session_transaction() as s:
        return s.get("account_id")


def outbox(app: Flask) -> list[Message]:
    sent: list[Message] = app.extensions.setdefault("mail_outbox", [])
    return sent


def link_path(body: str) -> str:
    """The path of the first portal link in a mail body (links are built on PUBLIC_URL)."""
    url = re.search(r"http://127\.0\.0\.1:5000/\S+", body)
    assert url, body
    return urlsplit(url.group(0)).path


def strip_csrf(text: str) -> str:
    return re.sub(r'"X-CSRFToken": "[^"]*"', "", text)


def test_sign_up_mails_a_link_that_creates_the_account_and_signs_in(
    app: Flask, client: FlaskClient
) -> None:
    answer = client.post("/signup", data=GOOD)
    assert answer.status_code == 200
    assert "Check your email to continue" in answer.text and "ana@example.org" in answer.text
    assert signed_in_account(client) is None  # nothing happens until the link is opened
    with app.app_context():
        assert db.session.query(Account).count() == 0
    [mail] = outbox(app)
    assert mail.to == "ana@example.org" and mail.subject == "Finish creating your account"
    assert "correct horse battery" not in mail.body
    path = link_path(mail.body)
    page = client.get(path)  # a mail scanner's GET creates nothing
    assert page.status_code == 200 and "Create my account" in page.text
    with app.app_context():
        assert db.session.query(Account).count() == 0
    done = client.post(path)
    assert done.status_code == 302 and done.headers["Location"] == "/"
    with app.app_context():
        account = db.session.query(Account).one()
        assert account.email == "ana@example.org" and account.display_name == "Ana O'Neil"
        assert signed_in_account(client) == account.id
        assert service.authenticate(db.session, "ana@example.org", "correct horse battery")
    again = app.test_client().post(path)
    assert again.status_code == 409 and "already exists" in again.text


def test_sign_up_with_a_known_email_answers_exactly_like_a_new_one(app: Flask) -> None:
    with app.app_context():
        service.create_account(db.session, "ana@example.org", "an older long password")
        db.session.commit()
    new, known = app.test_client(), app.test_client()
    a = new.post("/signup", data={**GOOD, "email": "bo@example.org"})
    b = known.post("/signup", data={**GOOD, "email": "ana@example.org"})
    assert a.status_code == b.status_code == 200
    assert strip_csrf(a.text).replace("bo@example.org", "EMAIL") == strip_csrf(b.text).replace(
        "ana@example.org", "EMAIL"
    )
    assert ("Set-Cookie" in a.headers) == ("Set-Cookie" in b.headers)
    with new.session_transaction() as s_new, known.session_transaction() as s_known:
        assert sorted(s_new) == sorted(s_known) and "account_id" not in s_known
    # The owner is told, with ways in; the account is untouched.
    owner = [m for m in outbox(app) if m.to == "ana@example.org"]
    assert len(owner) == 1 and "tried to create an account" in owner[0].body
    assert link_path(owner[0].body) == "/signin" and "/reset" in owner[0].body
    assert "/signup/confirm/" not in owner[0].body
    with app.app_context():
        assert service.authenticate(db.session, "ana@example.org", "an older long password")
        assert db.session.query(Account).count() == 1


def test_the_confirmation_link_shows_neither_the_email_nor_the_password_hash(
    app: Flask, client: FlaskClient
) -> None:
    client.post("/signup", data=GOOD)
    token = link_path(outbox(app)[0].body).rsplit("/", 1)[1]
    decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert GOOD["email"].encode() not in decoded and b"argon2" not in decoded
    assert client.post(f"/signup/confirm/{token}").status_code == 302


def test_confirmation_link_is_signed_and_expires(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.post("/signup", data=GOOD)
    path = link_path(outbox(app)[0].body)
    token = path.rsplit("/", 1)[1]
    forged = path[:-4] + ("AAAA" if not path.endswith("AAAA") else "BBBB")
    assert client.post(forged).status_code == 400
    other_key = service.start_signup(
        "another-secret-key-" + "x" * 40, "ev@example.org", "correct horse battery"
    )
    assert client.post(f"/signup/confirm/{other_key}").status_code == 400
    real = service._now
    monkeypatch.setattr(service, "_now", lambda: real() + 3601)
    late = client.post(f"/signup/confirm/{token}")
    assert late.status_code == 400 and "no longer works" in late.text
    with app.app_context():
        assert db.session.query(Account).count() == 0


@pytest.mark.parametrize("password", ["password1234", "PASSWORD1234", "Qwertyuiop", "1q2w3e4r5t"])
def test_sign_up_refuses_a_common_password_in_plain_words(
    app: Flask, client: FlaskClient, password: str
) -> None:
    answer = client.post("/signup", data={**GOOD, "password": password, "confirm": password})
    assert answer.status_code == 400
    assert "one of the most common ones, and is among the first that attackers try" in answer.text
    assert outbox(app) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"email": ""}, "Enter your email address."),
        ({"email": "not-an-email"}, "Enter an email address, like name@example.org."),
        ({"email": "a" * 400 + "@example.org"}, "An email address is at most 320 characters"),
        ({"password": "short", "confirm": "short"}, "at least 10"),
        ({"password": "x" * 2000, "confirm": "x" * 2000}, "use at most 1024 characters"),
        ({"confirm": "something else"}, "The passwords differ"),
        ({"display_name": "n" * 300}, "use at most 200 characters (this has 300)"),
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
    assert strip_csrf(unknown.text) == strip_csrf(answer.text)  # no account enumeration
    assert unknown.status_code == answer.status_code == 200
    [mail] = outbox(app)
    assert mail.to == "ana@example.org" and mail.subject == "Choose a new password"
    path = link_path(mail.body)
    bad = client.post(path, data={"password": "short", "confirm": "short"})
    assert bad.status_code == 400 and "at least 10" in bad.text
    common = client.post(path, data={"password": "iloveyou12345", "confirm": "iloveyou12345"})
    assert common.status_code == 400 and "most common ones" in common.text
    done = client.post(
        path, data={"password": "a brand new password", "confirm": "a brand new password"}
    )
    assert done.status_code == 302
    again = client.get(path)
    assert again.status_code == 400 and "no longer works" in again.text
    with app.app_context():
        assert service.authenticate(db.session, "ana@example.org", "a brand new password")


def test_reset_request_does_its_work_after_the_response(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    with app.app_context():
        service.create_account(db.session, "ana@example.org", "correct horse battery")
        db.session.commit()
    queued: list[Callable[[], object]] = []
    real = queue.enqueue

    def hold(app_: Flask, kind: str, *args: object) -> None:
        queued.append(lambda: real(app_, kind, *args))

    monkeypatch.setattr(queue, "enqueue", hold)
    known = client.post("/reset", data={"email": "ana@example.org"})
    unknown = client.post("/reset", data={"email": "nobody@example.org"})
    assert strip_csrf(known.text) == strip_csrf(unknown.text)
    with app.app_context():  # the request looked nothing up and stored nothing
        assert db.session.query(PasswordReset).count() == 0
    assert outbox(app) == [] and len(queued) == 2
    monkeypatch.undo()
    for run in queued:
        run()
    assert [m.to for m in outbox(app)] == ["ana@example.org"]
    with app.app_context():
        assert db.session.query(PasswordReset).count() == 1


def test_work_is_dropped_when_the_request_fails(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    with app.app_context():
        service.create_account(db.session, "ana@example.org", "correct horse battery")
        db.session.commit()
    import portal.web.accounts as views

    def fail(*_args: object, **_kwargs: object) -> tuple[str, int]:
        return "broken", 500

    monkeypatch.setattr(views, "render_template", fail)
    assert client.post("/reset", data={"email": "ana@example.org"}).status_code == 500
    assert outbox(app) == []


@pytest.fixture
def limited_app(app: Flask, database_url: str) -> Iterator[Callable[[str], Flask]]:
    """Build an app with the limiter on (the `app` fixture empties the tables afterwards)."""
    built: list[Flask] = []

    def build(limit: str) -> Flask:
        limited = create_app(
            {
                **app.config,
                "RATELIMIT_ENABLED": True,
                "SIGNIN_RATE_LIMIT": "1000 per minute",
                "SIGNIN_ACCOUNT_FAILURE_LIMIT": limit,
            }
        )
        built.append(limited)
        return limited

    yield build
    for limited in built:
        db.engine(limited).dispose()


def test_failed_sign_ins_are_limited_per_account_from_any_address(
    limited_app: Callable[[str], Flask],
) -> None:
    app = limited_app("3 per 15 minutes")
    with app.app_context():
        service.create_account(db.session, "ana@example.org", "correct horse battery")
        service.create_account(db.session, "bo@example.org", "correct horse battery")
        db.session.commit()
    wrong = {"email": "ana@example.org", "password": "nope nope nope"}
    right = {"email": "Ana@Example.org ", "password": "correct horse battery"}
    codes = [
        app.test_client().post("/signin", data=wrong, environ_base={"REMOTE_ADDR": ip})
        for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    ]
    assert [c.status_code for c in codes] == [400, 400, 400]
    paused = app.test_client().post("/signin", data=right, environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert paused.status_code == 429
    assert "Signing in to this account is paused" in paused.text
    assert "about 15 minutes" in paused.text and "choose a new password" in paused.text
    assert 0 < int(paused.headers["Retry-After"]) <= 900
    # Another account, even from the same address, is not affected.
    other = app.test_client().post(
        "/signin",
        data={"email": "bo@example.org", "password": "correct horse battery"},
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
    )
    assert other.status_code == 302
    from portal.extensions import limiter

    keys = " ".join(limiter.storage.storage)  # type: ignore[attr-defined]
    assert "signin-failures" in keys and "ana@example" not in keys.lower()


def test_unknown_emails_are_paused_alike(limited_app: Callable[[str], Flask]) -> None:
    app = limited_app("2 per 15 minutes")
    client = app.test_client()
    with app.app_context():
        service.create_account(db.session, "ana@example.org", "correct horse battery")
        db.session.commit()
    for email in ("ana@example.org", "nobody@example.org"):
        data = {"email": email, "password": "nope nope nope"}
        codes = [client.post("/signin", data=data).status_code for _ in range(3)]
        assert codes == [400, 400, 429]


def test_a_success_clears_the_failures(limited_app: Callable[[str], Flask]) -> None:
    app = limited_app("2 per 15 minutes")
    client = app.test_client()
    with app.app_context():
        service.create_account(db.session, "ana@example.org", "correct horse battery")
        db.session.commit()
    wrong = {"email": "ana@example.org", "password": "nope nope nope"}
    right = {"email": "ana@example.org", "password": "correct horse battery"}
    assert client.post("/signin", data=wrong).status_code == 400
    assert client.post("/signin", data=right).status_code == 302
    codes = [client.post("/signin", data=wrong).status_code for _ in range(3)]
    assert codes == [400, 400, 429]


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
