"""A split ("Not the same?") undone from the same place ("These are the same"): a POST with
CSRF like the split, for the owner only, kept over a re-sync."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import EhrConnection
from tests.phr import factories as f
from tests.phr.test_fold_rules import resync
from tests.phr.two_clinics import brant_at_both
from tests.sessions import begin


@pytest.fixture
def brant(app: Flask, client: FlaskClient) -> tuple[int, int, list]:
    with app.app_context():
        both = brant_at_both(db.session)
        db.session.commit()
        ids = both.account.id, both.lake.id
        encounters = [r for r in both.lake_resources if r["resourceType"] == "Encounter"]
    with client.session_transaction() as s:
        begin(s, ids[0])
    return ids[0], ids[1], encounters


def link(page: str, words: str) -> str:
    found = re.search(r'<a href="(/entries/[a-z]+\?[^"]+)">' + words, page)
    assert found, words
    return found.group(1).replace("&amp;", "&")


def total(page: str) -> int:
    return int(re.search(r"(\d+) visits?, newest first", page).group(1))  # type: ignore[union-attr]


def test_a_split_visit_is_joined_again_from_the_visits_page(
    app: Flask, client: FlaskClient, brant: tuple[int, int, list]
) -> None:
    account_id, lake_id, encounters = brant
    page = client.get("/records/visits").text
    assert total(page) == 37 and "These are the same" not in page
    split = link(page, "Not the same\\? Show them separately")
    done = client.post(split)
    assert done.status_code == 302 and done.headers["Location"].endswith("/records/visits")
    page = client.get("/records/visits").text
    assert total(page) == 38 and page.count("These are the same") == 2
    join = link(page, "These are the same")
    confirm = client.get(join)
    assert confirm.status_code == 200 and "Are these the same?" in confirm.text
    assert 'name="csrf_token"' in confirm.text
    # Someone else may not join (or even see) this person's records.
    stranger = app.test_client()
    with app.app_context():
        other = f.make_account(db.session, "Other")
        db.session.commit()
        with stranger.session_transaction() as s:
            begin(s, other.id)
    assert stranger.get(join).status_code == 404 and stranger.post(join).status_code == 404
    done = client.post(join)
    assert done.status_code == 302 and done.headers["Location"].endswith("/records/visits")
    assert client.get(join).status_code == 404  # nothing of them is split any more
    with app.app_context():
        lake = db.session.get(EhrConnection, lake_id)
        assert lake is not None
        resync(db.session, lake, encounters)
        lake.data_version += 1  # as the sync does: prepared pages must miss
        db.session.commit()
    page = client.get("/records/visits").text
    assert total(page) == 37 and "These are the same" not in page
    del account_id


def test_a_split_is_kept_over_a_resync(
    app: Flask, client: FlaskClient, brant: tuple[int, int, list]
) -> None:
    _, lake_id, encounters = brant
    client.post(link(client.get("/records/procedures").text, "Not the same\\? Show them"))
    client.post(link(client.get("/records/visits").text, "Not the same\\? Show them"))
    with app.app_context():
        lake = db.session.get(EhrConnection, lake_id)
        assert lake is not None
        resync(db.session, lake, encounters)
        lake.data_version += 1
        db.session.commit()
    page = client.get("/records/visits").text
    assert total(page) == 38 and page.count("These are the same") == 2


def test_joining_needs_the_csrf_token(
    app: Flask, client: FlaskClient, brant: tuple[int, int, list]
) -> None:
    client.post(link(client.get("/records/visits").text, "Not the same\\? Show them"))
    join = link(client.get("/records/visits").text, "These are the same")
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        assert client.post(join).status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert client.get("/records/visits").text.count("These are the same") == 2
