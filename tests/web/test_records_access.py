"""Who can open the records pages: signed out means sign in first; nobody sees another's record."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import Account
from portal.phr import documents
from portal.phr.access import open_record
from portal.phr.records import Records
from tests.phr import factories as f
from tests.sessions import begin

# Every records URL; {doc} is the first document of the record's owner.
PAGES = [
    "/records/",
    "/records/problems",
    "/records/problems?show=past",
    "/records/problems?show=all",
    "/records/medications",
    "/records/medications?show=past",
    "/records/allergies",
    "/records/immunizations",
    "/records/labs",
    "/records/labs?page=2",
    "/records/labs/test/2093-3",
    "/records/labs/panels",
    "/records/vitals",
    "/records/vitals/blood-pressure",
    "/records/visits",
    "/records/visits?page=2",
    "/records/procedures",
    "/records/documents",
    "/records/documents/{doc}/attachments/0",
    "/records/care-plans",
    "/records/care-team",
    "/records/coverage",
    "/records/bills",
    "/records/imaging",
    "/records/social-history",
    "/records/questionnaires",
]


def test_every_records_view_is_listed(app: Flask) -> None:
    """A new records view must be added to PAGES (and so to the access tests)."""
    endpoints = {r.endpoint for r in app.url_map.iter_rules() if r.endpoint.startswith("records.")}
    listed = {app.url_map.bind("localhost").match(urlsplit(u.format(doc=1)).path)[0] for u in PAGES}
    assert endpoints == listed


@pytest.fixture
def two_people(app: Flask) -> dict[str, object]:
    """Christin at "Alpha Clinic" (with a document), Arron at "Beta Clinic"."""
    with app.app_context():
        s = db.session
        alice, alice_conn, _ = f.patient_with(
            s, "christin_stiedemann", name="Christin", ehr_name="Alpha Clinic"
        )
        f.add_resources(s, alice_conn, [f.pdf_report("Patient/x"), f.coverage("Patient/x")])
        bob, _, _ = f.patient_with(s, "arron_schamberger", name="Arron", ehr_name="Beta Clinic")
        doc = documents.documents(Records(s, open_record(s, alice.id))).items[0].id
        s.commit()
        return {"alice": alice.id, "bob": bob.id, "doc": doc}


@pytest.mark.parametrize("url", PAGES)
def test_signed_out_goes_to_sign_in(client: FlaskClient, url: str) -> None:
    answer = client.get(url.format(doc=1))
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert location.path == "/signin"
    assert "next=" in location.query


@pytest.mark.parametrize("url", PAGES)
def test_nobody_sees_another_persons_record(
    client: FlaskClient, two_people: dict[str, object], url: str
) -> None:
    with client.session_transaction() as s:
        begin(s, two_people["bob"])
    answer = client.get(url.format(doc=two_people["doc"]))
    assert answer.status_code in (200, 403, 404)
    body = answer.get_data(as_text=True)
    for secret in ("Alpha Clinic", "Stiedemann", "Christin", "Allergy to bee venom", "%PDF"):
        assert secret not in body
    if url.startswith("/records/documents/") or url.endswith("2093-3"):
        assert answer.status_code == 404  # Arron has no such document, and no cholesterol test


@pytest.mark.parametrize("url", PAGES)
def test_the_owner_sees_their_own(
    client: FlaskClient, two_people: dict[str, object], url: str
) -> None:
    with client.session_transaction() as s:
        begin(s, two_people["alice"])
    answer = client.get(url.format(doc=two_people["doc"]))
    assert answer.status_code == 200
    if "attachments" not in url:
        assert "Alpha Clinic" in answer.text or "Christin" in answer.text
        assert "Beta Clinic" not in answer.text and "Schamberger" not in answer.text


def test_a_deleted_account_in_the_session_is_signed_out(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        account = Account(email="gone@example.org")
        db.session.add(account)
        db.session.commit()
        account_id = account.id
    with client.session_transaction() as s:
        begin(s, account_id)
    assert client.get("/records/").status_code == 200
    with app.app_context():
        db.session.delete(db.session.get(Account, account_id))
        db.session.commit()
    assert client.get("/records/").status_code == 302


def test_a_viewer_limited_to_some_sections_sees_only_those(
    app: Flask, client: FlaskClient, two_people: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Caregiver grants will limit sections: every query and page honours RecordView.allows."""
    import dataclasses

    from portal.web import auth

    def labs_only(session: object, viewer_id: int, owner_id: int | None = None) -> object:
        view = open_record(session, viewer_id, owner_id)  # type: ignore[arg-type]
        return dataclasses.replace(view, sections=frozenset({"labs", "patient"}))

    monkeypatch.setattr(auth, "open_record", labs_only)
    with client.session_transaction() as s:
        begin(s, two_people["alice"])
    assert client.get("/records/labs").status_code == 200
    assert client.get("/records/labs/test/2093-3").status_code == 200
    for url in ("/records/problems", "/records/allergies", "/records/visits", "/records/coverage"):
        assert client.get(url).status_code == 403, url
    doc = two_people["doc"]
    assert client.get(f"/records/documents/{doc}/attachments/0").status_code == 403
    summary = client.get("/records/")
    assert summary.status_code == 200
    assert "Recent lab results" in summary.text
    for hidden in (
        "Allergies",
        "Current medications",
        "Immunizations given",
        "Allergy to bee venom",
    ):
        assert hidden not in summary.text
    assert 'href="/records/allergies"' not in summary.text  # not in the navigation either
