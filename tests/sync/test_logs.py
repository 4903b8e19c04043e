"""Logs carry ids and counts, never tokens, codes, states, verifiers or record contents."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from portal.db import transaction
from portal.models import Account, EhrConnection, OAuthTransaction
from portal.smart.oauth import begin, complete
from portal.smart.settings import SmartSettings
from portal.smart.tokens import access_token, connect, disconnect
from portal.sync.engine import SyncSettings, enqueue, run
from tests.live import REDIRECT_URI, Browser, LiveEhr, consent_to, sign_in_at_ehr


def test_a_whole_connection_lifecycle_logs_no_secret_and_no_record(
    caplog: pytest.LogCaptureFixture,
    factory,
    ehr,
    browser: Browser,
    smart: SmartSettings,
    live_ehr: LiveEhr,
) -> None:
    caplog.set_level(logging.DEBUG)
    sign_in_at_ehr(live_ehr, browser)
    caplog.clear()  # what the test's browser logs is not the portal's
    with transaction(factory) as session:
        account = Account(display_name="")
        session.add(account)
        session.flush()
        url = begin(
            session,
            ehr,
            account_id=account.id,
            redirect_uri=REDIRECT_URI,
            browser_binding=browser.binding,
            settings=smart,
        )
    portal_records = list(caplog.records)
    callback = consent_to(browser, url)
    caplog.clear()
    with factory() as session:
        tx = session.scalar(sa.select(OAuthTransaction))
        assert tx is not None
        verifier, nonce = smart.cipher.decrypt(tx.code_verifier_enc), tx.nonce
    with transaction(factory) as session:
        result = complete(
            session,
            state=callback["state"],
            code=callback["code"],
            browser_binding=browser.binding,
            redirect_uri=REDIRECT_URI,
            settings=smart,
        )
        connection = connect(session, result, session.get(Account, account.id), settings=smart)
        run_id = enqueue(session, connection.id).id
    assert run(factory, run_id, "w", settings=SyncSettings(smart=smart)) == "complete"
    fresh = access_token(factory, connection.id, stale=result.access_token, settings=smart)
    with factory() as session:
        stored = session.get(EhrConnection, connection.id)
        assert stored is not None and stored.refresh_token_enc
        new_refresh = smart.cipher.decrypt(stored.refresh_token_enc)
    with transaction(factory) as session:
        disconnect(session, session.get(EhrConnection, connection.id), settings=smart)

    secrets = {
        "code": callback["code"],
        "state": callback["state"],
        "verifier": verifier,
        "nonce": nonce,
        "binding": browser.binding,
        "access": result.access_token,
        "refresh": result.refresh_token or "",
        "fresh": fresh,
        "new refresh": new_refresh,
        "id_token sub's name": "Stiedemann",  # the patient's family name: record contents
    }
    portal_records += caplog.records
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in portal_records)
    assert f"connection {connection.id} disconnected" in text  # it logged ids and counts
    leaked = [name for name, value in secrets.items() if value and value in text]
    assert leaked == []
