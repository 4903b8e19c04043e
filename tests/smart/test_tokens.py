"""The token store against the live sandbox: encryption at rest, refresh, rotation, disconnect.

Checklist points 14-16: tokens encrypted server-side; refresh before expiry, single-flight,
a rotated refresh token replaces the old one and is never used twice; invalid_grant asks
the patient to reconnect and keeps every local record; disconnect revokes at the EHR.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from portal.db import transaction, utcnow
from portal.models import EhrConnection, FhirRecord, SyncRun
from portal.smart.crypto import TokenCipher, TokenKeyError
from portal.smart.errors import NotConnected, ReconnectNeeded, TokenError
from portal.smart.oauth import refresh_grant, revoke
from portal.smart.settings import SmartSettings
from portal.smart.tokens import (
    TokenSource,
    access_token,
    disconnect,
    refresh_at,
    rotate_encryption,
)
from portal.sync.engine import SyncSettings, enqueue, run
from tests.live import (
    Browser,
    LiveEhr,
    Recorder,
    connected,
    register_ehr,
    rows,
    statements,
)


def stored(factory, connection_id: int) -> EhrConnection:
    with factory() as session:
        conn = session.get(EhrConnection, connection_id)
        assert conn is not None
        return conn


def plain_tokens(smart: SmartSettings, conn: EhrConnection) -> tuple[str, str | None]:
    assert conn.access_token_enc
    return (
        smart.cipher.decrypt(conn.access_token_enc),
        smart.cipher.decrypt_optional(conn.refresh_token_enc),
    )


def fhir_status(live: LiveEhr, token: str) -> int:
    answer = httpx.get(
        f"{live.fhir_base}/Patient/{live.patient('christin_stiedemann')}",
        headers={"Authorization": f"Bearer {token}"},
    )
    return answer.status_code


def refreshes(recorder: Recorder) -> list[httpx.Request]:
    return [
        r
        for r in recorder.to("/auth/token")
        if recorder.form(r).get("grant_type") == "refresh_token"
    ]


@pytest.fixture
def short_lived(live_ehr: LiveEhr):
    """The next token the sandbox issues expires after 60 seconds."""
    live_ehr.set_fault("token_lifetime", 60, remaining=1)
    yield
    live_ehr.clear_faults()


def time_passes(factory, connection_id: int, seconds: int) -> None:
    """As if the stored tokens had been received `seconds` earlier."""
    with transaction(factory) as session:
        conn = session.get(EhrConnection, connection_id)
        assert conn is not None and conn.updated_at and conn.token_expires_at
        conn.updated_at -= timedelta(seconds=seconds)
        conn.token_expires_at -= timedelta(seconds=seconds)


def test_tokens_are_encrypted_at_rest(
    factory, ehr, browser: Browser, smart: SmartSettings, live_ehr: LiveEhr
) -> None:
    connection_id = connected(factory, ehr, browser, live_ehr, smart)
    access, refresh = plain_tokens(smart, stored(factory, connection_id))
    assert refresh
    (raw,) = rows(factory, sa.select(EhrConnection.__table__))  # every column, as stored
    text = repr(tuple(raw))
    assert access not in text and refresh not in text
    assert fhir_status(live_ehr, access) == 200


def test_valid_token_is_used_without_refreshing(
    factory, ehr, browser: Browser, smart: SmartSettings, live_ehr: LiveEhr, recorder: Recorder
) -> None:
    connection_id = connected(factory, ehr, browser, live_ehr, smart)
    access, _ = plain_tokens(smart, stored(factory, connection_id))
    assert access_token(factory, connection_id, settings=smart) == access
    assert refreshes(recorder) == []


def test_a_token_source_primed_with_a_lasting_token_reads_nothing_more(
    factory, ehr, browser: Browser, smart: SmartSettings, live_ehr: LiveEhr, recorder: Recorder
) -> None:
    connection_id = connected(factory, ehr, browser, live_ehr, smart)
    conn = stored(factory, connection_id)
    source = TokenSource(factory, connection_id, smart)
    source.prime(conn)
    with statements(factory) as seen:
        assert source.get() == plain_tokens(smart, conn)[0]
    assert seen == [] and refreshes(recorder) == []


def test_a_token_source_is_not_primed_with_a_token_about_to_expire(
    factory,
    ehr,
    browser: Browser,
    smart: SmartSettings,
    live_ehr: LiveEhr,
    recorder: Recorder,
    short_lived,
) -> None:
    connection_id = connected(factory, ehr, browser, live_ehr, smart)
    time_passes(factory, connection_id, 50)  # 10 of its 60 seconds are left
    conn = stored(factory, connection_id)
    source = TokenSource(factory, connection_id, smart)
    source.prime(conn)
    assert source.get() != plain_tokens(smart, conn)[0]  # refreshed first
    assert len(refreshes(recorder)) == 1


def test_token_expiring_soon_is_refreshed_first_and_rotated(
    factory,
    ehr,
    browser: Browser,
    smart: SmartSettings,
    live_ehr: LiveEhr,
    recorder: Recorder,
    short_lived,
) -> None:
    connection_id = connected(factory, ehr, browser, live_ehr, smart)
    old_access, old_refresh = plain_tokens(smart, stored(factory, connection_id))
    assert old_refresh
    time_passes(factory, connection_id, 50)
    before = stored(factory, connection_id)
    assert before.token_expires_at and before.token_expires_at < utcnow() + timedelta(seconds=11)

    fresh = access_token(factory, connection_id, settings=smart)
    assert fresh != old_access
    assert len(refreshes(recorder)) == 1
    assert recorder.form(refreshes(recorder)[0])["refresh_token"] == old_refresh
    after = stored(factory, connection_id)
    new_access, new_refresh = plain_tokens(smart, after)
    assert new_access == fresh and new_refresh and new_refresh != old_refresh
    assert after.token_expires_at and after.token_expires_at > utcnow() + timedelta(minutes=30)
    assert after.refresh_lease_at is None and after.status == "active"
    assert fhir_status(live_ehr, fresh) == 200
    # The old refresh token is spent at the EHR and never sent again by us.
    with pytest.raises(TokenError) as spent:
        refresh_grant(after.ehr, old_refresh, settings=smart)
    assert spent.value.oauth_error == "invalid_grant" and spent.value.http_status == 400
    assert access_token(factory, connection_id, settings=smart) == fresh
    sent = [recorder.form(r)["refresh_token"] for r in refreshes(recorder)]
    assert sent.count(old_refresh) == 2  # ours once, plus the deliberate replay just above


def test_refresh_is_single_flight_across_threads(
    factory,
    ehr,
    browser: Browser,
    smart: SmartSettings,
    live_ehr: LiveEhr,
    recorder: Recorder,
    short_lived,
) -> None:
    connection_id = connected(factory, ehr, browser, live_ehr, smart)
    time_passes(factory, connection_id, 50)
    barrier = threading.Barrier(4)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(access_token(factory, connection_id, settings=smart))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1
    assert len(refreshes(recorder)) == 1


@pytest.mark.parametrize(
    ("lifetime", "received_ago", "due"),
    [
        (3600, 0, False),
        (3600, 3539, False),
        (3600, 3541, True),  # a long token: refreshed 60 seconds before it expires
        (60, 0, False),  # a 60-second token is used first, not refreshed at once
        (60, 44, False),
        (60, 46, True),  # ... and refreshed with a quarter of its lifetime left
        (2, 0, False),
        (2, 1.6, True),
    ],
)
def test_the_refresh_margin_scales_with_the_token_lifetime(
    lifetime: int, received_ago: float, due: bool, smart: SmartSettings
) -> None:
    received = utcnow() - timedelta(seconds=received_ago)
    when = refresh_at(received + timedelta(seconds=lifetime), received, smart)
    assert when is not None and (when <= utcnow()) is due


def test_without_a_known_lifetime_the_fixed_margin_applies(smart: SmartSettings) -> None:
    expires = utcnow() + timedelta(seconds=90)
    assert refresh_at(expires, None, smart) == expires - timedelta(seconds=60)
    assert refresh_at(None, utcnow(), smart) is None  # no expiry: refreshed after a 401


@pytest.mark.parametrize("refresh", ["none issued", "refused by the EHR"])
def test_a_60_second_token_is_used_by_the_first_sync_and_the_connection_stays_active(
    refresh: str,
    factory,
    ehr,
    browser: Browser,
    smart: SmartSettings,
    live_ehr: LiveEhr,
    recorder: Recorder,
) -> None:
    """Some EHRs issue one-minute tokens and no refresh token, or one that does not work:
    refreshing such a token at once would end a connection made a moment ago."""
    live_ehr.set_fault("token_lifetime", 60, remaining=1)
    if refresh == "none issued":
        live_ehr.set_fault("no_refresh_token", 1, remaining=1)
    try:
        connection_id = connected(factory, ehr, browser, live_ehr, smart)
    finally:
        live_ehr.clear_faults()
    fresh, stored_refresh = plain_tokens(smart, stored(factory, connection_id))
    assert (stored_refresh is None) is (refresh == "none issued")

    def refuse_refreshes(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path.endswith("/auth/token"):
            return httpx.Response(400, json={"error": "invalid_grant"})
        return response

    recorder.rewrite = refuse_refreshes
    with transaction(factory) as session:
        run_id = enqueue(session, connection_id).id
    run(factory, run_id, "test-worker", settings=SyncSettings(smart=smart, page_size=50))
    with factory() as session:
        done = session.get(SyncRun, run_id)
        assert done is not None and done.status == "complete", done and done.error
    assert refreshes(recorder) == []
    reads = [
        r for r in recorder.requests if "/fhir/" in r.url.path and ".well-known" not in r.url.path
    ]
    assert reads and {r.headers.get("authorization") for r in reads} == {f"Bearer {fresh}"}
    after = stored(factory, connection_id)
    assert after.status == "active" and plain_tokens(smart, after)[0] == fresh


def test_a_401_refreshes_once_even_when_the_token_looked_valid(
    factory, ehr, browser: Browser, smart: SmartSettings, live_ehr: LiveEhr, recorder: Recorder
) -> None:
    connection_id = connected(factory, ehr, browser, live_ehr, smart)
    access, _ = plain_tokens(smart, stored(factory, connection_id))
    first = access_token(factory, connection_id, stale=access, settings=smart)
    second = access_token(factory, connection_id, stale=access, settings=smart)
    assert first == second != access
    assert len(refreshes(recorder)) == 1


def test_invalid_grant_asks_to_reconnect_and_keeps_records(
    factory,
    ehr,
    browser: Browser,
    smart: SmartSettings,
    live_ehr: LiveEhr,
    caplog: pytest.LogCaptureFixture,
) -> None:
    connection_id = connected(factory, ehr, browser, live_ehr, smart)
    conn = stored(factory, connection_id)
    _, refresh = plain_tokens(smart, conn)
    assert refresh
    revoke(conn.ehr, [(refresh, "refresh_token")], settings=smart)  # the patient revoked us
    with transaction(factory) as session:
        session.add(
            FhirRecord(
                connection_id=connection_id,
                resource_type="Condition",
                resource_id="kept",
                fetched_at=utcnow(),
                category="problems",
                raw={"resourceType": "Condition", "id": "kept"},
            )
        )
        session.execute(
            sa.update(EhrConnection).values(token_expires_at=utcnow() - timedelta(seconds=5))
        )
    with pytest.raises(ReconnectNeeded) as ended:
        access_token(factory, connection_id, settings=smart)
    assert "still here" in ended.value.public_message
    # The log says what the clinic's IT team needs, and no token.
    (line,) = [r.getMessage() for r in caplog.records if "refresh of connection" in r.getMessage()]
    assert f"step=refresh error=invalid_grant http_status=400 ehr={ehr.id} ({ehr.name})" in line
    assert refresh not in caplog.text
    after = stored(factory, connection_id)
    assert after.status == "reconnect_needed"
    assert after.access_token_enc is None and after.refresh_token_enc is None
    assert rows(factory, sa.select(FhirRecord.resource_id)) == [("kept",)]
    with pytest.raises(ReconnectNeeded):
        access_token(factory, connection_id, settings=smart)


@pytest.mark.parametrize("client_type", ["confidential-symmetric", "confidential-asymmetric"])
def test_confidential_clients_refresh_and_revoke_with_their_own_authentication(
    client_type: str,
    factory,
    browser: Browser,
    smart: SmartSettings,
    live_ehr: LiveEhr,
    recorder: Recorder,
) -> None:
    ehr = register_ehr(factory, live_ehr, client_type, smart)
    connection_id = connected(factory, ehr, browser, live_ehr, smart)
    access, _ = plain_tokens(smart, stored(factory, connection_id))
    fresh = access_token(factory, connection_id, stale=access, settings=smart)
    assert fresh != access and fhir_status(live_ehr, fresh) == 200
    (refresh_request,) = refreshes(recorder)
    with transaction(factory) as session:
        conn = session.get(EhrConnection, connection_id)
        assert conn is not None
        disconnect(session, conn, settings=smart)
    assert fhir_status(live_ehr, fresh) == 401
    for request in [refresh_request, *recorder.to("/auth/revoke")]:
        form = recorder.form(request)
        if client_type == "confidential-symmetric":
            assert request.headers["authorization"].startswith("Basic ")
        else:
            assert form["client_assertion_type"].endswith("jwt-bearer")
        assert "client_secret" not in form


def test_disconnect_revokes_at_the_ehr_and_deletes_tokens(
    factory, ehr, browser: Browser, smart: SmartSettings, live_ehr: LiveEhr, recorder: Recorder
) -> None:
    connection_id = connected(factory, ehr, browser, live_ehr, smart)
    access, refresh = plain_tokens(smart, stored(factory, connection_id))
    assert fhir_status(live_ehr, access) == 200
    with transaction(factory) as session:
        conn = session.get(EhrConnection, connection_id)
        assert conn is not None
        assert disconnect(session, conn, settings=smart) is True
    revoked = [recorder.form(r) for r in recorder.to("/auth/revoke")]
    assert {(f["token"], f["token_type_hint"]) for f in revoked} == {
        (refresh, "refresh_token"),
        (access, "access_token"),
    }
    assert fhir_status(live_ehr, access) == 401  # the EHR no longer accepts it
    with pytest.raises(TokenError):
        refresh_grant(stored(factory, connection_id).ehr, refresh or "", settings=smart)
    after = stored(factory, connection_id)
    assert after.status == "disconnected"
    assert after.access_token_enc is None and after.refresh_token_enc is None
    with pytest.raises(NotConnected):
        access_token(factory, connection_id, settings=smart)


def test_key_rotation_re_encrypts_every_stored_secret(
    factory, browser: Browser, smart: SmartSettings, live_ehr: LiveEhr, token_key: bytes
) -> None:
    ehr = register_ehr(factory, live_ehr, "confidential-symmetric", smart)
    connection_id = connected(factory, ehr, browser, live_ehr, smart)
    access, refresh = plain_tokens(smart, stored(factory, connection_id))
    new_key = Fernet.generate_key()
    old_only = smart.cipher
    rotated = replace(smart, cipher=TokenCipher([new_key, token_key]))
    with transaction(factory) as session:
        assert rotate_encryption(session, settings=rotated) == 4  # 2 tokens, secret, verifier
    new_only = replace(smart, cipher=TokenCipher([new_key]))
    after = stored(factory, connection_id)
    assert plain_tokens(new_only, after) == (access, refresh)
    with pytest.raises(TokenKeyError):
        old_only.decrypt(after.access_token_enc or "")
    # The portal keeps working with only the new key: refresh with the re-encrypted secret.
    fresh = access_token(factory, connection_id, stale=access, settings=new_only)
    assert fhir_status(live_ehr, fresh) == 200


def test_the_refresh_lease_is_not_taken_with_a_rotated_refresh_token(
    factory, ehr, browser: Browser, smart: SmartSettings, live_ehr: LiveEhr
) -> None:
    """A worker that read the row before another rotated the token must not refresh with it."""
    from portal.smart.tokens import take_refresh_lease

    connection_id = connected(factory, ehr, browser, live_ehr, smart)
    with factory() as session:
        old = session.get(EhrConnection, connection_id).refresh_token_enc
    # Another worker refreshes: the refresh token rotates and the lease is free again.
    access_token(
        factory,
        connection_id,
        stale=plain_tokens(smart, stored(factory, connection_id))[0],
        settings=smart,
    )
    with factory() as session, session.begin():
        assert not take_refresh_lease(session, connection_id, old, smart)
        current = session.get(EhrConnection, connection_id).refresh_token_enc
        assert current != old
        assert take_refresh_lease(session, connection_id, current, smart)
