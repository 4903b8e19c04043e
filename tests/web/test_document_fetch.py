"""Documents the EHR only links, fetched through the portal from the LIVE sandbox EHR.

A real connection (standalone launch, consent, tokens) and a real sync; the DocumentReference
says `attachment.url = "Binary/<id>"` and the EHR keeps the PDF as a Binary of the patient.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from portal.db import transaction
from portal.models import EhrConnection, EhrServer, FhirRecord, SyncRun
from portal.sandbox.fhir.store import add_resource
from portal.sandbox.models import FhirHistory, FhirResource
from portal.smart.settings import SmartSettings
from portal.sync.engine import SyncSettings, enqueue, run
from tests.live import Browser, LiveEhr, Recorder, connected
from tests.phr.factories import MINIMAL_PDF, add_resources
from tests.sessions import begin

CLINIC = "Riverside General Hospital"
DOWN = f"{CLINIC} did not send this document just now. Try again later."


def linked_letter(patient: str, binary_url: str) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "id": f"letter-{uuid.uuid4().hex[:12]}",
        "status": "current",
        "type": {"text": "Discharge letter"},
        "subject": {"reference": f"Patient/{patient}"},
        "date": "2026-02-01T09:00:00Z",  # newer than anything else: first on the page
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "url": binary_url,
                    "title": "Discharge letter",
                }
            }
        ],
    }


def pdf_binary(rid: str, context: str) -> dict[str, Any]:
    return {
        "resourceType": "Binary",
        "id": rid,
        "contentType": "application/pdf",
        "securityContext": {"reference": context},
        "data": base64.b64encode(MINIMAL_PDF).decode(),
    }


@contextmanager
def in_ehr(live: LiveEhr, *resources: dict[str, Any]) -> Iterator[None]:
    """Resources in the live EHR for the length of a test (the EHR is shared by the run)."""
    with live.app.app_context(), live.sandbox_session() as session:
        for resource in resources:
            add_resource(session, resource)
            session.flush()  # a Binary's securityContext may name the one before it
    try:
        yield
    finally:
        with live.app.app_context(), live.sandbox_session() as session:
            for resource in resources:
                key = (resource["resourceType"], resource["id"])
                row = session.scalar(
                    sa.select(FhirResource).where(
                        FhirResource.resource_type == key[0], FhirResource.resource_id == key[1]
                    )
                )
                if row is not None:
                    session.delete(row)
                session.execute(
                    sa.delete(FhirHistory).where(
                        FhirHistory.resource_type == key[0], FhirHistory.resource_id == key[1]
                    )
                )


@contextmanager
def letter_in_ehr(live: LiveEhr, patient: str = "christin_stiedemann") -> Iterator[dict[str, Any]]:
    """A DocumentReference linking `Binary/<id>`, and that Binary (a PDF of the patient)."""
    binary_id = f"pdf-{uuid.uuid4().hex[:12]}"
    letter = linked_letter(live.patient(patient), f"Binary/{binary_id}")
    with in_ehr(live, letter, pdf_binary(binary_id, f"DocumentReference/{letter['id']}")):
        yield letter


def sync_once(factory: sessionmaker[Session], conn: int, smart: SmartSettings) -> SyncRun:
    settings = SyncSettings(smart=smart, page_size=200)
    with transaction(factory) as session:
        run_id = enqueue(session, conn).id
    run(factory, run_id, "test-worker", settings=settings)
    with factory() as session:
        found = session.get(SyncRun, run_id)
        assert found is not None
        return found


def sign_in(factory: sessionmaker[Session], client: FlaskClient, conn: int) -> None:
    with factory() as session:
        connection = session.get(EhrConnection, conn)
        assert connection is not None
        account_id = connection.account_id
    with client.session_transaction() as s:
        begin(s, account_id)


def store(factory: sessionmaker[Session], conn: int, resource: dict[str, Any]) -> int:
    """Store a record for the connection as a sync would; returns its record id."""
    with transaction(factory) as session:
        connection = session.get(EhrConnection, conn)
        assert connection is not None
        add_resources(session, connection, [resource])
    return record_id(factory, conn, resource["id"])


def record_id(factory: sessionmaker[Session], conn: int, resource_id: str) -> int:
    with factory() as session:
        found = session.scalar(
            sa.select(FhirRecord.id).where(
                FhirRecord.connection_id == conn, FhirRecord.resource_id == resource_id
            )
        )
        assert found is not None
        return found


def binary_requests(recorder: Recorder) -> list[httpx.Request]:
    return [r for r in recorder.requests if "/fhir/Binary/" in r.url.path]


@pytest.fixture
def conn(
    portal: Flask,
    factory: sessionmaker[Session],
    riverside: EhrServer,
    browser: Browser,
    live_ehr: LiveEhr,
    smart: SmartSettings,
    client: FlaskClient,
) -> int:
    """Christin's connection to Riverside, and the portal's browser signed in as her."""
    connection_id = connected(factory, riverside, browser, live_ehr, smart)
    sign_in(factory, client, connection_id)
    return connection_id


def assert_words_page(answer: Any, status: int, words: str) -> str:
    assert answer.status_code == status
    assert answer.headers["Content-Type"].startswith("text/html")
    text: str = answer.get_data(as_text=True)
    assert words in text
    assert "Traceback" not in text and "%PDF" not in text and "Bearer" not in text
    assert "Content-Disposition" not in answer.headers
    return text


def test_a_synced_letter_linking_a_binary_downloads_exactly_its_bytes(
    conn: int,
    client: FlaskClient,
    factory: sessionmaker[Session],
    live_ehr: LiveEhr,
    smart: SmartSettings,
    recorder: Recorder,
) -> None:
    with letter_in_ehr(live_ehr) as letter:
        done = sync_once(factory, conn, smart)
        assert done.status == "complete", done.error
        record = record_id(factory, conn, letter["id"])
        with factory() as session:  # stored as received: a link, not the document
            stored = session.get(FhirRecord, record)
            assert stored is not None
            assert "data" not in stored.raw["content"][0]["attachment"]

        page = client.get("/records/documents")
        link = f"/records/documents/{record}/attachments/0"
        assert page.status_code == 200
        (anchor,) = re.findall(rf'<a [^>]*href="{link}"[^>]*>([^<]*)</a>', page.text)
        assert f"from {CLINIC}" in anchor
        assert "fetched from there when you open it" in page.text

        recorder.requests.clear()
        answer = client.get(link)
    assert answer.status_code == 200
    assert answer.data == MINIMAL_PDF
    assert answer.headers["Content-Type"] == "application/pdf"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="discharge-letter.pdf"'
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert answer.headers["Cache-Control"] == "private, no-store"
    (request,) = binary_requests(recorder)
    assert str(request.url).startswith(live_ehr.fhir_base + "/Binary/pdf-")
    assert request.headers["Accept"] == "application/pdf"
    assert request.headers["Authorization"].startswith("Bearer ")
    assert all(r.url.host == "127.0.0.1" for r in recorder.requests)


def test_a_401_refreshes_the_token_once_and_retries(
    conn: int,
    client: FlaskClient,
    factory: sessionmaker[Session],
    live_ehr: LiveEhr,
    smart: SmartSettings,
    recorder: Recorder,
) -> None:
    with letter_in_ehr(live_ehr) as letter:
        record = store(factory, conn, letter)
        with transaction(factory) as session:  # a token the EHR does not know, not yet expired
            session.execute(
                sa.update(EhrConnection)
                .where(EhrConnection.id == conn)
                .values(access_token_enc=smart.cipher.encrypt("bogus"))
            )
        recorder.requests.clear()
        answer = client.get(f"/records/documents/{record}/attachments/0")
    assert answer.status_code == 200 and answer.data == MINIMAL_PDF
    first, second = binary_requests(recorder)
    assert first.headers["Authorization"] == "Bearer bogus"
    assert second.headers["Authorization"] != "Bearer bogus"
    refreshes = [r for r in recorder.to("/auth/token") if b"refresh_token" in r.content]
    assert len(refreshes) == 1


def test_ehr_answering_503_gives_a_502_page_in_words(
    conn: int,
    client: FlaskClient,
    factory: sessionmaker[Session],
    faults: LiveEhr,
    smart: SmartSettings,
    recorder: Recorder,
    sleeps: list[float],
) -> None:
    with letter_in_ehr(faults) as letter:
        record = store(factory, conn, letter)
        faults.set_fault("unavailable", 1)
        recorder.requests.clear()
        answer = client.get(f"/records/documents/{record}/attachments/0")
    assert_words_page(answer, 502, DOWN)
    assert len(binary_requests(recorder)) == smart.max_attempts  # bounded retries
    assert sleeps == [1.0] * (smart.max_attempts - 1)  # Retry-After honoured


def test_unreachable_ehr_gives_a_502_page_in_words(
    conn: int,
    client: FlaskClient,
    factory: sessionmaker[Session],
    live_ehr: LiveEhr,
    riverside: EhrServer,
) -> None:
    with letter_in_ehr(live_ehr) as letter:
        record = store(factory, conn, letter)
        with transaction(factory) as session:  # the EHR moves away: nothing answers there
            session.execute(
                sa.update(EhrServer)
                .where(EhrServer.id == riverside.id)
                .values(fhir_base="http://127.0.0.1:9/fhir")
            )
        answer = client.get(f"/records/documents/{record}/attachments/0")
    assert_words_page(answer, 502, DOWN)


def test_a_binary_the_ehr_does_not_have_is_a_404_page(
    conn: int,
    client: FlaskClient,
    factory: sessionmaker[Session],
    live_ehr: LiveEhr,
    recorder: Recorder,
) -> None:
    letter = linked_letter(live_ehr.patient("christin_stiedemann"), "Binary/no-such-binary")
    record = store(factory, conn, letter)
    recorder.requests.clear()
    answer = client.get(f"/records/documents/{record}/attachments/0")
    assert_words_page(answer, 404, f"{CLINIC} no longer has this document.")
    assert len(binary_requests(recorder)) == 1


def test_another_patients_binary_is_not_found_at_the_ehr(
    conn: int, client: FlaskClient, factory: sessionmaker[Session], live_ehr: LiveEhr
) -> None:
    with letter_in_ehr(live_ehr, "arron_schamberger") as arrons:
        mine = linked_letter(
            live_ehr.patient("christin_stiedemann"), arrons["content"][0]["attachment"]["url"]
        )
        record = store(factory, conn, mine)
        answer = client.get(f"/records/documents/{record}/attachments/0")
    assert_words_page(answer, 404, "no longer has this document")


def test_a_connection_needing_reconnect_says_so_with_a_link_to_my_clinics(
    conn: int,
    client: FlaskClient,
    factory: sessionmaker[Session],
    live_ehr: LiveEhr,
    recorder: Recorder,
) -> None:
    letter = linked_letter(live_ehr.patient("christin_stiedemann"), "Binary/anything")
    record = store(factory, conn, letter)
    with transaction(factory) as session:
        session.execute(
            sa.update(EhrConnection)
            .where(EhrConnection.id == conn)
            .values(status="reconnect_needed", access_token_enc=None, refresh_token_enc=None)
        )
    recorder.requests.clear()
    answer = client.get(f"/records/documents/{record}/attachments/0")
    text = assert_words_page(answer, 409, "Connect again in My clinics")
    assert 'href="/connect"' in text
    assert recorder.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "https://elsewhere.example/fhir/Binary/1",
        "http://127.0.0.1:9/fhir/Binary/1",
        "{base}/admin/faults",  # the EHR's own host, outside its FHIR base
        "../admin/faults",
    ],
)
def test_a_link_outside_the_fhir_base_is_never_requested(
    conn: int,
    client: FlaskClient,
    factory: sessionmaker[Session],
    live_ehr: LiveEhr,
    recorder: Recorder,
    url: str,
) -> None:
    letter = linked_letter(
        live_ehr.patient("christin_stiedemann"), url.format(base=live_ehr.base_url)
    )
    record = store(factory, conn, letter)
    recorder.requests.clear()
    page = client.get("/records/documents")
    assert f"/records/documents/{record}/attachments/0" not in page.text
    assert f"Discharge letter is kept at {CLINIC} and was not copied to this app." in page.text
    answer = client.get(f"/records/documents/{record}/attachments/0")
    assert answer.status_code == 404
    assert recorder.requests == []  # nothing went out, with or without the token


def test_without_a_binary_grant_the_page_says_the_clinic_did_not_let_it(
    portal: Flask,
    client: FlaskClient,
    factory: sessionmaker[Session],
    riverside: EhrServer,
    browser: Browser,
    live_ehr: LiveEhr,
    smart: SmartSettings,
) -> None:
    conn = connected(factory, riverside, browser, live_ehr, smart, untick=("patient/Binary.r",))
    with factory() as session:
        connection = session.get(EhrConnection, conn)
        assert connection is not None and "Binary" not in connection.granted_scope
    sign_in(factory, client, conn)
    with letter_in_ehr(live_ehr) as letter:
        record = store(factory, conn, letter)
        answer = client.get(f"/records/documents/{record}/attachments/0")
    text = assert_words_page(answer, 502, f"{CLINIC} did not let the portal fetch this document")
    assert 'href="/connect"' in text
