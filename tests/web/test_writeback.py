"""The patient's entries sent to the LIVE sandbox EHR: shape, one copy on retry, no offer
without a create grant."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from portal.db import transaction
from portal.jobs import queue
from portal.models import Account, EhrConnection, EhrServer, WriteBack
from portal.phr.entries import service
from portal.phr.entries.catalog import MEASURE_BY_KEY
from portal.sandbox.models import FhirHistory, FhirResource
from portal.smart.settings import SmartSettings
from portal.sync import writeback
from tests.live import Browser, LiveEhr, Recorder, connected
from tests.sessions import begin

CLINIC = "Riverside General Hospital"


@pytest.fixture
def synchronous(
    monkeypatch: pytest.MonkeyPatch, factory: sessionmaker[Session], smart: SmartSettings
) -> None:
    """The page's background send, run before the answer (so the test sees its outcome)."""

    real = queue.enqueue

    def send_now(app: Flask, kind: str, *args: Any) -> None:
        if kind != "writeback.send":
            return real(app, kind, *args)
        writeback.send(factory, args[0], smart)  # with the test's SMART settings

    monkeypatch.setattr(queue, "enqueue", send_now)


@pytest.fixture(autouse=True)
def ehr_left_as_found(live_ehr: LiveEhr) -> Iterator[None]:
    """What these tests send to the live EHR (shared by the run) is removed afterwards: a
    later test that syncs the same patient finds the record it expects."""

    def present() -> set[str]:
        with live_ehr.app.app_context(), live_ehr.sandbox_session() as session:
            return set(session.scalars(sa.select(FhirResource.resource_id)))

    before = present()
    yield
    added = present() - before
    if added:
        with live_ehr.app.app_context(), live_ehr.sandbox_session() as session:
            session.execute(sa.delete(FhirHistory).where(FhirHistory.resource_id.in_(added)))
            session.execute(sa.delete(FhirResource).where(FhirResource.resource_id.in_(added)))


def sign_in(factory: sessionmaker[Session], client: FlaskClient, conn: int) -> int:
    with factory() as session:
        connection = session.get(EhrConnection, conn)
        assert connection is not None
        account_id = connection.account_id
    with client.session_transaction() as s:
        begin(s, account_id)
    return account_id


def blood_pressure(factory: sessionmaker[Session], account_id: int) -> int:
    entry = service.MeasurementInput(
        MEASURE_BY_KEY["blood-pressure"],
        (Decimal("128"), Decimal("84")),
        "mm[Hg]",
        datetime(2026, 3, 4, 8, 30, tzinfo=UTC),
        "after a walk",
    )
    with transaction(factory) as session:
        account = session.get(Account, account_id)
        assert account is not None
        return service.add_measurement(session, account, entry).id


def entry_raw(factory: sessionmaker[Session], account_id: int, entry_id: int) -> dict[str, Any]:
    with factory() as session:
        account = session.get(Account, account_id)
        assert account is not None
        return service.entry_of(session, account, entry_id).raw


def identifier_of(factory: sessionmaker[Session], account_id: int, entry_id: int) -> str:
    return str(entry_raw(factory, account_id, entry_id)["identifier"][0]["value"])


def at_ehr(live: LiveEhr, identifier: str) -> list[dict[str, Any]]:
    """Observations in the EHR carrying this identifier."""
    with live.app.app_context(), live.sandbox_session() as session:
        found = session.scalars(
            sa.select(FhirResource.content).where(FhirResource.resource_type == "Observation")
        ).all()
    return [
        r for r in found if any(i.get("value") == identifier for i in r.get("identifier") or [])
    ]


def fhir_posts(recorder: Recorder) -> list[Any]:
    """What the portal POSTed to the clinic's FHIR API."""
    return [r for r in recorder.requests if r.method == "POST" and "/fhir/" in r.url.path]


def state(factory: sessionmaker[Session], record_id: int) -> WriteBack:
    with factory() as session:
        found = session.scalar(sa.select(WriteBack).where(WriteBack.record_id == record_id))
        assert found is not None
        return found


@pytest.fixture
def conn(
    portal: Flask,
    factory: sessionmaker[Session],
    riverside: EhrServer,
    browser: Browser,
    live_ehr: LiveEhr,
    smart: SmartSettings,
) -> int:
    return connected(factory, riverside, browser, live_ehr, smart)


@pytest.mark.usefixtures("synchronous")
def test_an_entry_sent_lands_at_the_clinic_in_its_shape(
    conn: int,
    client: FlaskClient,
    factory: sessionmaker[Session],
    live_ehr: LiveEhr,
) -> None:
    account_id = sign_in(factory, client, conn)
    entry_id = blood_pressure(factory, account_id)
    page = client.get(f"/entries/{entry_id}").text
    assert f"Send to {CLINIC}" in page
    answer = client.post(f"/entries/{entry_id}/send/{conn}")
    assert answer.status_code == 302
    sent = state(factory, entry_id)
    assert sent.state == "sent" and sent.server_id and sent.version_sent == "1"
    raw = entry_raw(factory, account_id, entry_id)
    (copy,) = at_ehr(live_ehr, raw["identifier"][0]["value"])
    patient = f"Patient/{live_ehr.patient('christin_stiedemann')}"
    assert copy["id"] == sent.server_id and copy["id"] != raw["id"]
    assert copy["subject"]["reference"] == patient
    assert copy["performer"][0]["reference"] == patient
    assert copy["code"]["coding"][0]["code"] == "85354-9"
    assert [c["valueQuantity"]["value"] for c in copy["component"]] == [128, 84]
    assert copy["identifier"] == raw["identifier"]
    assert copy["note"] == [{"text": "after a walk"}]
    assert f"{CLINIC}</strong>:\n      sent." in client.get(f"/entries/{entry_id}").text


@pytest.mark.usefixtures("synchronous")
def test_a_retry_after_503_makes_exactly_one_copy(
    conn: int,
    client: FlaskClient,
    factory: sessionmaker[Session],
    faults: LiveEhr,
    smart: SmartSettings,
) -> None:
    account_id = sign_in(factory, client, conn)
    entry_id = blood_pressure(factory, account_id)
    with factory() as session:
        identifier = (
            session.get(Account, account_id)
            and service.entry_of(
                session,
                session.get(Account, account_id),  # type: ignore[arg-type]
                entry_id,
            ).raw["identifier"][0]["value"]
        )
    faults.set_fault("unavailable", value=0, remaining=smart.max_attempts)
    client.post(f"/entries/{entry_id}/send/{conn}")
    failed = state(factory, entry_id)
    assert failed.state == "failed" and failed.next_attempt_at is not None
    assert failed.error == f"{CLINIC} could not be reached. The portal will try again."
    assert at_ehr(faults, identifier) == []
    assert "could not be reached" in client.get(f"/entries/{entry_id}").text
    # Later (the sweep), the clinic answers again: sent once.
    with transaction(factory) as session:
        session.execute(
            sa.update(WriteBack).values(next_attempt_at=datetime(2000, 1, 1, tzinfo=UTC))
        )
    assert writeback.run_due(factory, smart) == {failed.id: "sent"}
    assert len(at_ehr(faults, identifier)) == 1
    first = state(factory, entry_id).server_id
    # The answer to a send that did reach the clinic is lost: sending again finds its copy.
    with transaction(factory) as session:
        session.execute(sa.update(WriteBack).values(state="queued", server_id=None))
    assert writeback.run_due(factory, smart) == {failed.id: "sent"}
    assert len(at_ehr(faults, identifier)) == 1
    assert state(factory, entry_id).server_id == first


def test_without_a_create_grant_nothing_is_offered_or_sent(
    portal: Flask,
    factory: sessionmaker[Session],
    riverside: EhrServer,
    browser: Browser,
    live_ehr: LiveEhr,
    smart: SmartSettings,
    client: FlaskClient,
    recorder: Recorder,
) -> None:
    conn = connected(
        factory, riverside, browser, live_ehr, smart, untick=("patient/Observation.c",)
    )
    with factory() as session:
        connection = session.get(EhrConnection, conn)
        assert connection is not None and "Observation.c" not in connection.granted_scope
    account_id = sign_in(factory, client, conn)
    entry_id = blood_pressure(factory, account_id)
    page = client.get(f"/entries/{entry_id}").text
    assert f"{CLINIC} did not allow this app to add readings to your record there" in page
    assert "Send to" not in page
    recorder.requests.clear()
    answer = client.post(f"/entries/{entry_id}/send/{conn}", follow_redirects=True)
    assert "did not allow this app to add readings" in answer.text
    assert fhir_posts(recorder) == []
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(WriteBack)) == 0


def test_an_entry_is_saved_while_the_clinic_is_down(
    conn: int,
    client: FlaskClient,
    factory: sessionmaker[Session],
    faults: LiveEhr,
    recorder: Recorder,
) -> None:
    account_id = sign_in(factory, client, conn)
    faults.set_fault("unavailable", value=0)
    recorder.requests.clear()
    form = {"value": "71", "unit": "kg", "when": "2026-03-04T08:30"}
    assert client.post("/entries/new/weight", data=form).status_code == 302
    assert recorder.requests == []  # saving never waits on a clinic
    with factory() as session:
        account = session.get(Account, account_id)
        assert account is not None
        source = service.own_source(session, account)
        assert "71 kg" in client.get("/records/vitals").text
        assert source.data_version >= 1


@pytest.mark.usefixtures("synchronous")
def test_an_entry_deleted_before_it_went_is_never_sent(
    conn: int,
    client: FlaskClient,
    factory: sessionmaker[Session],
    faults: LiveEhr,
    smart: SmartSettings,
) -> None:
    account_id = sign_in(factory, client, conn)
    entry_id = blood_pressure(factory, account_id)
    identifier = identifier_of(factory, account_id, entry_id)
    faults.set_fault("unavailable", value=0, remaining=smart.max_attempts)
    client.post(f"/entries/{entry_id}/send/{conn}")  # fails: the clinic is down
    client.post(f"/entries/{entry_id}/delete")
    faults.clear_faults()
    with transaction(factory) as session:
        session.execute(
            sa.update(WriteBack).values(next_attempt_at=datetime(2000, 1, 1, tzinfo=UTC))
        )
    assert list(writeback.run_due(factory, smart).values()) == ["gave_up"]
    assert state(factory, entry_id).error == "You deleted it, so it was not sent."
    assert at_ehr(faults, identifier) == []


@pytest.mark.usefixtures("synchronous")
def test_send_again_from_a_stale_page_does_not_post_it_again(
    conn: int,
    client: FlaskClient,
    factory: sessionmaker[Session],
    live_ehr: LiveEhr,
    recorder: Recorder,
) -> None:
    """Two tabs show "Send to Riverside"; the first sends it. The second's button (and a
    second click while it is on its way) says so, and nothing reaches the clinic again."""
    account_id = sign_in(factory, client, conn)
    entry_id = blood_pressure(factory, account_id)
    assert client.post(f"/entries/{entry_id}/send/{conn}").status_code == 302
    sent = state(factory, entry_id)
    assert sent.state == "sent" and sent.attempts == 1
    recorder.requests.clear()
    answer = client.post(f"/entries/{entry_id}/send/{conn}", follow_redirects=True)
    assert f"{CLINIC} already has it." in answer.text
    assert fhir_posts(recorder) == []
    again = state(factory, entry_id)
    assert (again.state, again.attempts, again.server_id) == ("sent", 1, sent.server_id)
    # On its way (claimed by a worker): a second click queues nothing more.
    with transaction(factory) as session:
        session.execute(sa.update(WriteBack).values(state="sending", updated_at=datetime.now(UTC)))
    answer = client.post(f"/entries/{entry_id}/send/{conn}", follow_redirects=True)
    assert f"It is already being sent to {CLINIC}." in answer.text
    assert fhir_posts(recorder) == []
    assert len(at_ehr(live_ehr, identifier_of(factory, account_id, entry_id))) == 1


@pytest.mark.usefixtures("synchronous")
def test_trying_again_after_a_failure_keeps_the_count_of_attempts(
    conn: int,
    client: FlaskClient,
    factory: sessionmaker[Session],
    faults: LiveEhr,
    smart: SmartSettings,
) -> None:
    account_id = sign_in(factory, client, conn)
    entry_id = blood_pressure(factory, account_id)
    faults.set_fault("unavailable", value=0, remaining=2 * smart.max_attempts)
    client.post(f"/entries/{entry_id}/send/{conn}")
    assert (state(factory, entry_id).state, state(factory, entry_id).attempts) == ("failed", 1)
    page = client.get(f"/entries/{entry_id}").text
    assert "Send again" in page
    client.post(f"/entries/{entry_id}/send/{conn}")  # the patient's "Send again"
    failed = state(factory, entry_id)
    assert (failed.state, failed.attempts) == ("failed", 2)
    faults.clear_faults()
    client.post(f"/entries/{entry_id}/send/{conn}")
    sent = state(factory, entry_id)
    assert (sent.state, sent.attempts) == ("sent", 3)
    assert len(at_ehr(faults, identifier_of(factory, account_id, entry_id))) == 1


def test_the_send_job_delivered_twice_sends_once(
    conn: int,
    client: FlaskClient,
    portal: Flask,
    factory: sessionmaker[Session],
    live_ehr: LiveEhr,
    smart: SmartSettings,
    recorder: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The queue delivers a job at least once: the same `writeback.send` job run twice (a
    worker killed after the POST, before the job was acknowledged) posts once."""
    from portal import jobs
    from portal.smart.settings import EXTENSION

    enqueued: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr(queue, "enqueue", lambda app, kind, *args: enqueued.append((kind, args)))
    monkeypatch.setitem(portal.extensions, EXTENSION, smart)
    account_id = sign_in(factory, client, conn)
    entry_id = blood_pressure(factory, account_id)
    client.post(f"/entries/{entry_id}/send/{conn}")
    assert [kind for kind, _ in enqueued] == ["writeback.send"]
    recorder.requests.clear()
    jobs.run_now(portal, "writeback.send", *enqueued[0][1])
    jobs.run_now(portal, "writeback.send", *enqueued[0][1])
    assert len(fhir_posts(recorder)) == 1
    assert state(factory, entry_id).state == "sent"
    assert len(at_ehr(live_ehr, identifier_of(factory, account_id, entry_id))) == 1
