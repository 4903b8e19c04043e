"""Fixtures of the web tests: a signed-in patient with no clinic (`me`), and those that need the
live sandbox EHR (documents, write-back)."""

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from tests.live import (  # noqa: F401  (fixtures are found by name)
    CLIENT_IDS,
    LiveEhr,
    _fresh_discovery,
    browser,
    client_key,
    factory,
    faults,
    live_ehr,
    portal,
    recorder,
    riverside,
    sleeps,
    smart,
    token_key,
)
from tests.phr import factories as f
from tests.sessions import begin


@pytest.fixture
def me(app: Flask, client: FlaskClient) -> int:
    with app.app_context():
        account = f.make_account(db.session, "Ana Lima")
        db.session.commit()
        account_id = account.id
    with client.session_transaction() as s:
        begin(s, account_id)
    return account_id
