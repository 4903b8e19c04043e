"""Server-side sessions: opaque cookies, idle and absolute timeouts with a moving clock, the
warning, sign-out and password changes that end sessions, drafts kept, the account page.

Every test runs on the database store and on Redis (the production store)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from http.cookies import SimpleCookie

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from portal.accounts import passwords, service
from portal.db import utcnow
from portal.extensions import db
from portal.sessions import browser_words, digest
from portal.web.sessions import PortalSessionInterface
from tests.phr import factories as f

PASSWORD = "correct horse battery"
PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)
REDIS_URL = "redis://127.0.0.1:6379/0"


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture(params=["database", "redis"])
def app(
    request: pytest.FixtureRequest, app: Flask, make_app: Callable[..., Flask]
) -> Iterator[Flask]:
    """The portal app with sessions in the database, then in Redis."""
    if request.param == "database":
        yield app
        return
    prefix = f"portal-test-{uuid.uuid4().hex}:"
    yield make_app(REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=prefix)
    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)


@pytest.fixture
def clock(app: Flask) -> Clock:
    clock = Clock()
    interface = app.session_interface
    assert isinstance(interface, PortalSessionInterface)
    interface.clock = clock
    return clock


@pytest.fixture
def ana(app: Flask) -> int:
    with app.app_context():
        account, _connection, _ = f.patient_with(db.session, "christin_stiedemann", name="Ana")
        account.email = "ana@example.org"
        account.password_hash = passwords.hash_password(PASSWORD)
        db.session.commit()
        return account.id


def new_browser(app: Flask, user_agent: str = PHONE) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    return client


def sign_in(client: FlaskClient, password: str = PASSWORD) -> None:
    answer = client.post("/signin", data={"email": "ana@example.org", "password": password})
    assert answer.status_code == 302, answer.text


def cookie_of(client: FlaskClient, app: Flask) -> str:
    found = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert found is not None
    return found.value


def copy_of(app: Flask, value: str) -> FlaskClient:
    """Another browser holding a copy of a session cookie."""
    thief = new_browser(app, "curl/8.0")
    thief.set_cookie(app.config["SESSION_COOKIE_NAME"], value)
    return thief


def reads_the_record(client: FlaskClient) -> bool:
    answer = client.get("/records/allergies")
    return answer.status_code == 200 and "Allergies" in answer.text


# -- the cookie ----------------------------------------------------------------------------------


def test_the_cookie_is_an_opaque_random_id_and_nothing_else(app: Flask, ana: int) -> None:
    browser = new_browser(app)
    sign_in(browser)
    value = cookie_of(browser, app)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value)  # 256 bits, base64url: no data in it
    store = app.session_interface.store  # type: ignore[attr-defined]
    stored = store.get(digest(value))
    assert stored is not None and stored.account_id == ana  # the account is known server-side
    assert store.get(value) is None and value not in repr(stored) + stored.data
    assert reads_the_record(browser)


def test_the_cookie_flags(app: Flask, ana: int) -> None:
    browser = new_browser(app)
    answer = browser.post("/signin", data={"email": "ana@example.org", "password": PASSWORD})
    header = next(h for h in answer.headers.getlist("Set-Cookie") if "portal_session" in h)
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    assert "Expires" not in header and "Max-Age" not in header  # gone with the browser


def test_production_uses_a_host_prefixed_secure_cookie(
    database_url: str, make_app: Callable[..., Flask]
) -> None:
    prod = make_app(
        {
            "ENV": "production",
            "TESTING": True,
            "DATABASE_URL": database_url,
            "SECRET_KEY": "a-production-secret-that-is-long-and-random-0123456789",
            "TOKEN_KEYS": "zJ0h0u2Wn6cJrFQ7pXjWq3sYhE6V5m2r9o0hK8m1l2Q=",
            "WTF_CSRF_ENABLED": False,
            "MAIL_BACKEND": "smtp",
            "MAIL_SMTP_HOST": "mx.example.org",
            "MAIL_FROM": "portal@example.org",
        }
    )
    assert prod.config["SESSION_COOKIE_NAME"] == "__Host-portal_session"
    client = prod.test_client()
    with prod.app_context():
        service.create_account(db.session, "p@example.org", PASSWORD)
        db.session.commit()
    answer = client.post("/signin", data={"email": "p@example.org", "password": PASSWORD})
    header = next(h for h in answer.headers.getlist("Set-Cookie") if "__Host-" in h)
    attributes = SimpleCookie(header)["__Host-portal_session"]
    assert attributes["secure"] and attributes["httponly"] and attributes["path"] == "/"
    assert not attributes["domain"]


def test_signing_in_gives_a_new_id(app: Flask, ana: int) -> None:
    browser = new_browser(app)
    browser.get("/signin")  # an anonymous session first (its CSRF secret)
    before = cookie_of(browser, app)
    sign_in(browser)
    after = cookie_of(browser, app)
    assert before != after
    assert not reads_the_record(copy_of(app, before))  # a fixed session is no way in
    assert reads_the_record(copy_of(app, after))


# -- ending sessions -----------------------------------------------------------------------------


def test_a_copied_cookie_is_useless_after_sign_out(app: Flask, ana: int) -> None:
    browser = new_browser(app)
    sign_in(browser)
    copied = cookie_of(browser, app)
    assert reads_the_record(copy_of(app, copied))
    assert browser.post("/signout").status_code == 302
    assert not reads_the_record(copy_of(app, copied))
    assert not reads_the_record(browser)


def test_a_copied_cookie_is_useless_after_a_password_reset(app: Flask, ana: int) -> None:
    browser = new_browser(app)
    sign_in(browser)
    copied = cookie_of(browser, app)
    with app.app_context():
        token = service.start_reset(db.session, "ana@example.org")
        db.session.commit()
    resetter = new_browser(app)
    done = resetter.post(
        f"/reset/{token}",
        data={"password": "a brand new password", "confirm": "a brand new password"},
    )
    assert done.status_code == 302
    assert not reads_the_record(copy_of(app, copied))
    assert not reads_the_record(browser)
    assert reads_the_record(resetter)  # the browser that reset it is signed in


def test_changing_the_password_ends_every_other_session(app: Flask, ana: int) -> None:
    here, elsewhere = new_browser(app), new_browser(app)
    sign_in(here)
    sign_in(elsewhere)
    before = cookie_of(here, app)
    answer = here.post(
        "/account/password",
        data={
            "current": PASSWORD,
            "password": "another long password",
            "confirm": "another long password",
        },
    )
    assert answer.status_code == 302
    assert cookie_of(here, app) != before  # this browser has a new id too
    assert reads_the_record(here)
    assert not reads_the_record(elsewhere)
    assert not reads_the_record(copy_of(app, before))


def test_a_wrong_current_password_changes_nothing(app: Flask, ana: int) -> None:
    here, elsewhere = new_browser(app), new_browser(app)
    sign_in(here)
    sign_in(elsewhere)
    answer = here.post(
        "/account/password",
        data={
            "current": "not it at all",
            "password": "another long password",
            "confirm": "another long password",
        },
    )
    assert answer.status_code == 400 and "not your current password" in answer.text
    assert reads_the_record(elsewhere)


def test_the_account_page_lists_sessions_and_signs_out_the_others(app: Flask, ana: int) -> None:
    here = new_browser(app)
    laptop = new_browser(
        app,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Safari/605.1.15",
    )
    sign_in(here)
    sign_in(laptop)
    page = here.get("/account")
    assert page.status_code == 200
    assert "Chrome Mobile on Android" in page.text and "Safari on Mac OS X" in page.text
    assert "This browser" in page.text and "Last used" in page.text
    assert here.post("/account/sessions/end-others").status_code == 302
    assert not reads_the_record(laptop)
    assert reads_the_record(here)
    page = here.get("/account").text
    assert "Safari on Mac OS X" not in page and "not signed in anywhere else" in page


# -- timeouts ------------------------------------------------------------------------------------


def test_the_idle_timeout_ends_the_session(app: Flask, ana: int, clock: Clock) -> None:
    browser = new_browser(app)
    sign_in(browser)
    clock.advance(minutes=14)
    assert reads_the_record(browser)  # activity: fifteen more minutes from here
    clock.advance(minutes=14)
    assert reads_the_record(browser)
    clock.advance(minutes=15, seconds=1)
    answer = browser.get("/records/labs")
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/signin")
    signin = browser.get(answer.headers["Location"])
    assert "not used for 15 minutes" in signin.text
    assert not reads_the_record(browser)


def test_a_page_polling_by_itself_does_not_keep_the_session_alive(
    app: Flask, ana: int, clock: Clock
) -> None:
    browser = new_browser(app)
    sign_in(browser)
    for _ in range(16):  # a page left open: the sync status and the session watch poll
        clock.advance(minutes=1)
        browser.get("/sync/status", headers={"HX-Request": "true"})
        browser.get("/session/status", headers={"HX-Request": "true"})
    assert not reads_the_record(browser)


def test_the_absolute_lifetime_ends_even_a_busy_session(app: Flask, ana: int, clock: Clock) -> None:
    browser = new_browser(app)
    sign_in(browser)
    for _ in range(12 * 6 - 1):
        clock.advance(minutes=10)
        assert reads_the_record(browser)
    clock.advance(minutes=10, seconds=1)
    answer = browser.get("/records/")
    assert answer.status_code == 302
    assert "signed in for 12 hours" in browser.get(answer.headers["Location"]).text


def test_timeouts_are_configurable(app: Flask, ana: int, make_app: Callable[..., Flask]) -> None:
    short = make_app(app.config, SESSION_IDLE_TIMEOUT=120, SESSION_ABSOLUTE_TIMEOUT=600)
    clock = Clock()
    short.session_interface.clock = clock  # type: ignore[attr-defined]
    browser = new_browser(short)
    sign_in(browser)
    clock.advance(seconds=119)
    assert reads_the_record(browser)
    clock.advance(seconds=121)
    assert not reads_the_record(browser)


# -- the warning ---------------------------------------------------------------------------------


def test_a_signed_in_page_schedules_the_check_for_a_minute_before_the_end(
    app: Flask, ana: int, clock: Clock
) -> None:
    browser = new_browser(app)
    sign_in(browser)
    page = browser.get("/records/").text
    watch = re.search(r'id="session-watch"[^>]*hx-trigger="load delay:(\d+)s"', page)
    assert watch is not None and 14 * 60 <= int(watch.group(1)) <= 14 * 60 + 1


def test_the_warning_then_stay_signed_in(app: Flask, ana: int, clock: Clock) -> None:
    browser = new_browser(app)
    sign_in(browser)
    clock.advance(minutes=10)
    quiet = browser.get("/session/status", headers={"HX-Request": "true"})
    assert "Stay signed in" not in quiet.text and "delay:" in quiet.text
    clock.advance(minutes=4, seconds=10)
    warning = browser.get("/session/status", headers={"HX-Request": "true"})
    assert warning.status_code == 200
    assert "Stay signed in" in warning.text and 'role="alertdialog"' in warning.text
    stay = browser.post("/session/extend", headers={"HX-Request": "true"})
    assert stay.status_code == 200 and "Stay signed in" not in stay.text
    clock.advance(minutes=14)  # 28 minutes after sign-in, 14 after "Stay signed in"
    assert reads_the_record(browser)


def test_after_the_end_the_check_tells_the_page_where_to_sign_in(
    app: Flask, ana: int, clock: Clock
) -> None:
    """The page then sends an entry form being typed in, or goes there (static/portal.js)."""
    browser = new_browser(app)
    sign_in(browser)
    clock.advance(minutes=16)
    answer = browser.get(
        "/session/status",
        headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/records/labs?page=2"},
    )
    assert json.loads(answer.headers["HX-Trigger"]) == {
        "session-ended": {"signin": "/signin?next=/records/labs?page%3D2"}
    }
    assert answer.text == ""


def test_an_htmx_request_after_the_end_redirects_the_page_not_the_fragment(
    app: Flask, ana: int, clock: Clock
) -> None:
    browser = new_browser(app)
    sign_in(browser)
    clock.advance(minutes=16)
    answer = browser.get(
        "/records/labs?page=2",
        headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/records/labs"},
    )
    assert answer.headers.get("HX-Redirect", "").startswith("/signin?next=/records/labs")


# -- what was being typed ------------------------------------------------------------------------


def test_a_form_sent_after_the_timeout_is_kept_as_a_draft(
    app: Flask, ana: int, clock: Clock
) -> None:
    browser = new_browser(app)
    sign_in(browser)
    assert browser.get("/entries/new/allergy").status_code == 200
    clock.advance(minutes=20)  # the patient was typing a long time
    typed = {"name": "Kiwi from the market", "reaction": "Hives", "severity": "moderate"}
    answer = browser.post("/entries/new/allergy", data=typed)
    assert answer.status_code == 302 and answer.headers["Location"].startswith(
        "/signin?next=/entries/new/allergy"
    )
    signin = browser.get(answer.headers["Location"]).text
    assert "not used for 15 minutes" in signin and "What you had typed is kept" in signin
    sign_in(browser)
    form = browser.get("/entries/new/allergy").text
    assert 'value="Kiwi from the market"' in form and "We kept what you had typed" in form
    assert 'value="Hives"' in form
    again = browser.get("/entries/new/allergy").text
    assert 'value="Kiwi from the market"' not in again  # given back once


def test_a_draft_goes_back_only_to_the_same_person(app: Flask, ana: int, clock: Clock) -> None:
    with app.app_context():
        other = f.make_account(db.session, "Bea", email="bea@example.org")
        other.password_hash = passwords.hash_password(PASSWORD)
        db.session.commit()
    browser = new_browser(app)
    sign_in(browser)
    clock.advance(minutes=20)
    browser.post("/entries/new/allergy", data={"name": "Kiwi from the market"})
    answer = browser.post("/signin", data={"email": "bea@example.org", "password": PASSWORD})
    assert answer.status_code == 302
    assert "Kiwi from the market" not in browser.get("/entries/new/allergy").text


def test_the_draft_keeps_no_password(app: Flask, ana: int, clock: Clock) -> None:
    browser = new_browser(app)
    sign_in(browser)
    clock.advance(minutes=20)
    browser.post(
        "/account/password",
        data={"current": PASSWORD, "password": "typed new one!", "confirm": "typed new one!"},
    )
    sign_in(browser)
    page = browser.get("/account").text
    assert PASSWORD not in page and "typed new one!" not in page


def test_browser_words() -> None:
    assert browser_words(PHONE) == "Chrome Mobile on Android"
    assert browser_words("") == "Unknown browser"
    assert browser_words("something odd") == "Unknown browser"


def test_a_form_sent_after_the_page_learnt_of_the_end_is_kept_too(
    app: Flask, ana: int, clock: Clock
) -> None:
    """The session watch found the end first (and the browser got a new, empty session): the
    form that follows is kept all the same, instead of failing its CSRF check."""
    browser = new_browser(app)
    sign_in(browser)
    clock.advance(minutes=20)
    ended = browser.get("/session/status", headers={"HX-Request": "true"})
    assert "session-ended" in ended.headers["HX-Trigger"]
    answer = browser.post("/entries/new/allergy", data={"name": "Kiwi from the market"})
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/signin")
    sign_in(browser)
    assert 'value="Kiwi from the market"' in browser.get("/entries/new/allergy").text


def test_an_htmx_request_after_the_end_tells_the_page(app: Flask, ana: int, clock: Clock) -> None:
    browser = new_browser(app)
    sign_in(browser)
    clock.advance(minutes=20)
    stay = browser.post("/session/extend", headers={"HX-Request": "true"})
    assert json.loads(stay.headers["HX-Trigger"])["session-ended"]["signin"].startswith("/signin")
    assert not reads_the_record(browser)
