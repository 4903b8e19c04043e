"""Nothing a signed-in person is shown may be kept by a browser's or a proxy's cache.

The test walks the URL map, so a route added later without `no-store` fails it.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from portal.accounts import service
from portal.extensions import db
from portal.models import Account
from tests.phr import factories as f

HTMX = {"HX-Request": "true"}
# Responses that may be cached: static files, the JWKS (public keys, the same for all) and the
# /favicon.ico redirect to the static icon.
CACHEABLE = {"static", "home.jwks", "home.favicon"}
PASSWORD = "correct horse battery"


@pytest.fixture
def signed_in(app: Flask, client: FlaskClient) -> dict[str, object]:
    """A person signed in through the sign-in form, with a clinic, a connection and an entry;
    returns values for the URL map's parameters (ids of these real objects)."""
    with app.app_context():
        service.create_account(db.session, "walk@example.org", PASSWORD)
        db.session.commit()
    answer = client.post("/signin", data={"email": "walk@example.org", "password": PASSWORD})
    assert answer.status_code == 302
    with app.app_context():
        account = db.session.query(Account).filter_by(email="walk@example.org").one()
        # A clinic nobody serves: connecting to it answers at once with a problem page.
        connection = f.make_connection(
            db.session, account, "Closed Clinic", fhir_base="http://127.0.0.1:9/fhir"
        )
        db.session.commit()
        values: dict[str, object] = {"ehr_id": connection.ehr_server_id}
        values["connection_id"] = connection.id
    added = client.post(
        "/entries/new/weight", data={"value": "70", "unit": "kg", "when": "2026-03-04T08:30"}
    )
    assert added.status_code == 302
    page = client.get("/records/vitals").text
    values["record_id"] = int(re.findall(r'href="/entries/(\d+)"', page)[0])
    values.update(index=0, kind="weight", token="not-a-reset-token", filename="portal.css")
    return values


def url_for_rule(rule: Rule, values: dict[str, object]) -> str:
    url = rule.rule
    for name in rule.arguments:
        value = values.get(name, 1)
        if rule.endpoint == "entries.add" and name == "key":
            value = "weight"
        url = re.sub(rf"<(?:[a-z]+:)?{name}>", str(value), url)
    return url


def test_every_response_but_static_files_and_the_jwks_is_no_store(
    app: Flask, client: FlaskClient, signed_in: dict[str, object]
) -> None:
    seen: dict[str, int] = {}
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()):
            continue
        url = url_for_rule(rule, signed_in)
        for headers in ({}, HTMX):  # full pages and htmx fragments
            answer = client.get(url, headers=headers)
            answer.close()  # static files are streamed
            assert answer.status_code != 500, url  # 502 for the closed clinic: a page
            seen[url] = answer.status_code
            cache = answer.headers.get("Cache-Control", "")
            if rule.endpoint in CACHEABLE:
                assert answer.status_code == 200 and "no-store" not in cache, url
            else:
                assert "no-store" in cache, (url, answer.status_code, cache)
    # The walk reached real pages, not only refusals: the routes with ids among them.
    ok = {url for url, status in seen.items() if status == 200}
    assert {"/records/", "/connect", "/sync/status", "/entries/new", "/records/vitals"} <= ok
    assert f"/entries/{signed_in['record_id']}" in ok
    assert f"/entries/{signed_in['record_id']}/edit" in ok
    assert f"/style/{signed_in['connection_id']}.css" in ok
    assert "/entries/new/weight" in ok and "/records/vitals/weight" in ok


def test_posts_redirects_and_error_pages_are_no_store(
    app: Flask, client: FlaskClient, signed_in: dict[str, object]
) -> None:
    for rule in app.url_map.iter_rules():
        if "POST" not in (rule.methods or ()) or rule.endpoint == "accounts.signout":
            continue
        # Ids of nothing: a refusal, never a change; it must be no-store all the same.
        answer = client.post(url_for_rule(rule, {"record_id": 0, "connection_id": 0}))
        assert "no-store" in answer.headers["Cache-Control"], rule.rule
    for url in ("/no-such-page", "/records/labs/test/no-such-test", "/entries/0"):
        answer = client.get(url)
        assert answer.status_code == 404 and "no-store" in answer.headers["Cache-Control"]
    assert "no-store" in client.post("/").headers["Cache-Control"]  # 405


def test_a_view_keeps_its_own_stricter_value_and_static_files_stay_cacheable(
    client: FlaskClient, signed_in: dict[str, object]
) -> None:
    assert client.get("/records/").headers["Cache-Control"] == "private, no-store"
    static = client.get("/static/portal.css")
    assert static.status_code == 200 and "no-store" not in static.headers.get("Cache-Control", "")
    static.close()
    assert client.get("/.well-known/jwks.json").headers["Cache-Control"] == "public, max-age=300"
