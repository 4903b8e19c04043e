"""Documents the EHR only links (`attachment.url`): fetched from the connection's FHIR base
with its token, never from anywhere else; failures in plain words."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.extensions import db
from portal.phr import documents
from portal.phr.access import open_record
from portal.phr.documents import DocumentUnavailable, linked_url
from portal.phr.records import Records
from tests.phr import factories as f

BASE = "https://ehr.example/r4/fhir"
TOKEN = "access-token-that-must-not-leak"
PDF = f.MINIMAL_PDF


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("Binary/123", f"{BASE}/Binary/123"),
        (" Binary/123 ", f"{BASE}/Binary/123"),
        ("Binary/123/_history/2", f"{BASE}/Binary/123/_history/2"),
        ("Binary/123?_format=json", f"{BASE}/Binary/123?_format=json"),
        (f"{BASE}/Binary/9", f"{BASE}/Binary/9"),
        ("https://EHR.example:443/r4/fhir/Binary/9", "https://EHR.example:443/r4/fhir/Binary/9"),
        ("https://evil.example/r4/fhir/Binary/1", None),
        ("//evil.example/r4/fhir/Binary/1", None),
        ("https://ehr.example.evil.example/r4/fhir/Binary/1", None),
        ("http://ehr.example/r4/fhir/Binary/1", None),
        ("https://ehr.example:8443/r4/fhir/Binary/1", None),
        ("https://user:pw@ehr.example/r4/fhir/Binary/1", None),
        ("https://ehr.example/r4/fhirx/Binary/1", None),
        ("/Binary/1", None),
        ("../Binary/1", None),
        ("Binary/../../admin", None),
        ("Binary/%2e%2e/%2E%2E/admin", None),
        ("Binary\\..\\..\\admin", None),
        ("Binary/%252e%252e/%252e%252e/admin", None),  # decoded twice by some servers
        ("Binary/..%2f..%2fadmin", None),
        ("Binary/..;/..;/admin", None),
        ("Binary/%2e%2e%5c%2e%2e%5cadmin", None),
        ("https://EHR.example.:443/r4/fhir/Binary/9", "https://EHR.example.:443/r4/fhir/Binary/9"),
        ("Binary/1#section", None),
        ("#contained", None),
        ("urn:uuid:5f0c8d2e-3b1a-4f7e-9a4b-1c2d3e4f5a6b", None),
        ("data:application/pdf;base64,JVBERi0=", None),
        ("ftp://ehr.example/r4/fhir/Binary/1", None),
        (BASE, None),
        (BASE + "/", None),
        ("?x=1", None),
        ("", None),
        (None, None),
        (42, None),
    ],
)
def test_links_resolve_against_the_fhir_base_or_not_at_all(url: Any, expected: str | None) -> None:
    assert linked_url(url, BASE) == expected


def test_without_a_fhir_base_nothing_resolves() -> None:
    assert linked_url("Binary/1", None) is None
    assert linked_url("Binary/1", "") is None


# ---- fetching, against a fake EHR --------------------------------------------------------


class FakeEhr:
    """The EHR behind the portal's SMART settings: answers with `handler`, remembers requests."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.handler: Callable[[httpx.Request], httpx.Response] = self.pdf

    def pdf(self, _request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=PDF, headers={"Content-Type": "application/pdf"})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


@pytest.fixture
def ehr(app: Flask) -> FakeEhr:
    fake = FakeEhr()
    settings = app.extensions["smart"]
    settings.transport = httpx.MockTransport(fake)
    settings.sleep = lambda _seconds: None
    return fake


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with app.app_context():
        yield db.session


def linked_note(url: str, content_type: str | None = "application/pdf") -> dict[str, Any]:
    attachment: dict[str, Any] = {"url": url, "title": "Discharge letter"}
    if content_type:
        attachment["contentType"] = content_type
    return {
        "resourceType": "DocumentReference",
        "id": uuid.uuid4().hex,
        "status": "current",
        "type": {"text": "Discharge letter"},
        "subject": {"reference": "Patient/p"},
        "date": "2024-05-01",
        "content": [{"attachment": attachment}],
    }


def stored(
    app: Flask, session: Session, note: dict[str, Any], **columns: Any
) -> tuple[Records, int]:
    """An account whose one clinic (on BASE, with a valid token) sent `note`."""
    account = f.make_account(session)
    values: dict[str, Any] = {
        "status": "active",
        "access_token_enc": app.extensions["smart"].cipher.encrypt(TOKEN),
        "token_expires_at": utcnow() + timedelta(hours=1),
    }
    values.update(columns)
    connection = f.make_connection(session, account, fhir_base=BASE, **values)
    f.add_resources(session, connection, [note])
    session.commit()  # the token store reads the connection in a session of its own
    records = Records(session, open_record(session, account.id))
    (doc,) = documents.documents(records).items
    return records, doc.id


def fetch(app: Flask, records: Records, record_id: int, **kwargs: Any) -> documents.Download | None:
    return documents.download(records, record_id, 0, session_factory=db.sessionmaker(app), **kwargs)


def test_a_linked_attachment_is_offered_and_fetched_from_the_fhir_base(
    app: Flask, session: Session, ehr: FakeEhr
) -> None:
    records, record_id = stored(app, session, linked_note("Binary/123"))
    (attachment,) = documents.documents(records).items[0].attachments
    assert attachment.remote and attachment.fetchable and not attachment.downloadable
    found = fetch(app, records, record_id)
    assert found is not None
    assert found.data == PDF
    assert found.content_type == "application/pdf"
    assert found.filename == "discharge-letter.pdf"
    (request,) = ehr.requests
    assert str(request.url) == f"{BASE}/Binary/123"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/pdf"


def test_without_a_session_factory_a_link_is_not_fetched(
    app: Flask, session: Session, ehr: FakeEhr
) -> None:
    records, record_id = stored(app, session, linked_note("Binary/123"))
    assert documents.download(records, record_id, 0) is None
    assert ehr.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "https://elsewhere.example/r4/fhir/Binary/1",
        "https://ehr.example/r4/other/Binary/1",
        "../../admin/Binary/1",
    ],
)
def test_a_link_elsewhere_is_not_offered_and_never_requested(
    app: Flask, session: Session, ehr: FakeEhr, url: str
) -> None:
    records, record_id = stored(app, session, linked_note(url))
    (attachment,) = documents.documents(records).items[0].attachments
    assert attachment.remote and not attachment.fetchable
    assert fetch(app, records, record_id) is None
    assert ehr.requests == []


def test_a_disconnected_clinics_link_is_not_offered(
    app: Flask, session: Session, ehr: FakeEhr
) -> None:
    records, record_id = stored(
        app,
        session,
        linked_note("Binary/123"),
        status="disconnected",
        access_token_enc=None,
        token_expires_at=None,
    )
    (attachment,) = documents.documents(records).items[0].attachments
    assert attachment.remote and not attachment.fetchable
    with pytest.raises(DocumentUnavailable) as raised:
        fetch(app, records, record_id)
    assert raised.value.status == 409 and raised.value.reconnect
    assert ehr.requests == []


def test_a_connection_needing_reconnect_says_so_without_asking_the_ehr(
    app: Flask, session: Session, ehr: FakeEhr
) -> None:
    records, record_id = stored(
        app,
        session,
        linked_note("Binary/123"),
        status="reconnect_needed",
        access_token_enc=None,
        token_expires_at=None,
    )
    with pytest.raises(DocumentUnavailable) as raised:
        fetch(app, records, record_id)
    problem = raised.value
    assert problem.status == 409 and problem.reconnect
    assert "Riverside General Hospital" in problem.message and "My clinics" in problem.message
    assert ehr.requests == []


@pytest.mark.parametrize(
    ("answer", "status", "words", "reconnect"),
    [
        (
            httpx.Response(503),
            502,
            "Riverside General Hospital did not send this document just now. Try again later.",
            False,
        ),
        (
            httpx.Response(500),
            502,
            "Riverside General Hospital did not send this document just now. Try again later.",
            False,
        ),
        (
            httpx.Response(404),
            404,
            "Riverside General Hospital no longer has this document.",
            False,
        ),
        (
            httpx.Response(410),
            404,
            "Riverside General Hospital no longer has this document.",
            False,
        ),
        (httpx.Response(403), 502, "did not let the portal fetch this document", True),
        (httpx.Response(400), 502, "did not send this document just now", False),
    ],
)
def test_what_the_clinic_answers_becomes_plain_words(
    app: Flask,
    session: Session,
    ehr: FakeEhr,
    caplog: pytest.LogCaptureFixture,
    answer: httpx.Response,
    status: int,
    words: str,
    reconnect: bool,
) -> None:
    ehr.handler = lambda _request: answer
    records, record_id = stored(app, session, linked_note("Binary/123"))
    with caplog.at_level(logging.DEBUG), pytest.raises(DocumentUnavailable) as raised:
        fetch(app, records, record_id)
    assert raised.value.status == status
    assert words in raised.value.message
    assert raised.value.reconnect is reconnect
    assert TOKEN not in caplog.text and "Binary/123" not in caplog.text


def test_an_unreachable_clinic_is_a_502_in_words(
    app: Flask, session: Session, ehr: FakeEhr
) -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    ehr.handler = unreachable
    records, record_id = stored(app, session, linked_note("Binary/123"))
    with pytest.raises(DocumentUnavailable) as raised:
        fetch(app, records, record_id)
    assert raised.value.status == 502
    assert raised.value.message == (
        "Riverside General Hospital did not send this document just now. Try again later."
    )


def test_a_document_over_the_cap_is_refused_in_words(
    app: Flask, session: Session, ehr: FakeEhr
) -> None:
    records, record_id = stored(app, session, linked_note("Binary/123"))
    with pytest.raises(DocumentUnavailable) as raised:
        fetch(app, records, record_id, max_bytes=len(PDF) - 1)
    assert raised.value.status == 502 and "too large" in raised.value.message


def test_the_clinics_content_type_is_used_when_the_attachment_has_none(
    app: Flask, session: Session, ehr: FakeEhr
) -> None:
    records, record_id = stored(app, session, linked_note("Binary/123", content_type=None))
    found = fetch(app, records, record_id)
    assert found is not None
    assert found.content_type == "application/pdf" and found.filename.endswith(".pdf")
    assert ehr.requests[0].headers["Accept"] == "*/*"


def test_fetched_html_is_served_as_an_opaque_file(
    app: Flask, session: Session, ehr: FakeEhr
) -> None:
    ehr.handler = lambda _r: httpx.Response(
        200, content=b"<script>alert(1)</script>", headers={"Content-Type": "text/html"}
    )
    records, record_id = stored(app, session, linked_note("Binary/123", content_type="text/html"))
    found = fetch(app, records, record_id)
    assert found is not None and found.content_type == "application/octet-stream"


def test_a_fhir_json_binary_answer_is_decoded(app: Flask, session: Session, ehr: FakeEhr) -> None:
    import base64

    ehr.handler = lambda _r: httpx.Response(
        200,
        json={
            "resourceType": "Binary",
            "contentType": "application/pdf",
            "data": base64.b64encode(PDF).decode(),
        },
        headers={"Content-Type": "application/fhir+json"},
    )
    records, record_id = stored(app, session, linked_note("Binary/123"))
    found = fetch(app, records, record_id)
    assert found is not None and found.data == PDF


def test_only_ones_own_linked_documents_are_fetched(
    app: Flask, session: Session, ehr: FakeEhr
) -> None:
    _, record_id = stored(app, session, linked_note("Binary/123"))
    other = f.make_account(session)
    f.make_connection(session, other, "Lakeside Family Clinic")
    session.commit()
    others = Records(session, open_record(session, other.id))
    assert fetch(app, others, record_id) is None
    assert ehr.requests == []
