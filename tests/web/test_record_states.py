"""Every records page, and "Your clinics", in each state of a section: not shared, still being
fetched, could not be fetched, none on record, items with a clinic missing. One verdict
(portal.phr.availability), the same words everywhere."""

from __future__ import annotations

import html
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from portal.phr.availability import EMPTY_NAMES, SINGULAR, your
from portal.smart.scopes import SECTION_NAMES
from portal.web.records import SECTIONS
from tests.phr import factories as f
from tests.phr.states import BUSY, add_run, progress, scope_without
from tests.plain import technical_words
from tests.sessions import begin
from tests.web.test_answers import phq9

RIVERSIDE = "Riverside General Hospital"
LAKESIDE = "Lakeside Family Clinic"
# The records blueprint's section pages (endpoint, section), and the summary's cards.
PAGES = [(endpoint, section) for endpoint, _label, section in SECTIONS if section]
SUMMARY_CARDS = ["allergies", "problems", "medications", "vitals", "labs", "immunizations"]
WALK = [*PAGES, *(("records.summary", s) for s in SUMMARY_CARDS)]
IDS = [f"{endpoint.split('.')[1]}-{section}" for endpoint, section in WALK]


def url(app: Flask, endpoint: str) -> str:
    with app.test_request_context():
        from flask import url_for

        return url_for(endpoint)


def text_of(page: str) -> str:
    """What the patient reads of a page: tags gone, entities decoded, spaces folded."""
    body = page.split("<body", 1)[1].split(">", 1)[1] if "<body" in page else page
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def signed_in(client: FlaskClient, account_id: int) -> None:
    with client.session_transaction() as s:
        begin(s, account_id)


def fetching_words(section: str, clinic: str = RIVERSIDE) -> str:
    verb = "is" if section in SINGULAR else "are"
    name = your(SECTION_NAMES[section])
    return f"{name[:1].upper()}{name[1:]} from {clinic} {verb} still being fetched"


def clinic_sentences(text: str, start: str) -> list[str]:
    return re.findall(re.escape(start) + r"[^.]*\.", text)


# ---- one clinic, one section in each state ---------------------------------------------------


@pytest.mark.parametrize(("endpoint", "section"), WALK, ids=IDS)
def test_not_shared(app: Flask, client: FlaskClient, endpoint: str, section: str) -> None:
    with app.app_context():
        account = f.make_account(db.session)
        add_run(
            db.session, f.make_connection(db.session, account, granted_scope=scope_without(section))
        )
        db.session.commit()
        account_id = account.id
    signed_in(client, account_id)
    name = SECTION_NAMES[section]
    page = text_of(client.get(url(app, endpoint)).text)
    assert f"{RIVERSIDE} did not share {name} with this app." in page
    assert f"No {EMPTY_NAMES.get(section, name)} on record" not in page
    clinics = text_of(client.get("/connect").text)
    said = clinic_sentences(clinics, f"{RIVERSIDE} did not share ")
    assert any(name in s and "all of" not in s for s in said), said
    assert not clinic_sentences(clinics, "Still being fetched")
    assert not clinic_sentences(clinics, "Could not be fetched")


@pytest.mark.parametrize(("endpoint", "section"), WALK, ids=IDS)
def test_still_being_fetched(app: Flask, client: FlaskClient, endpoint: str, section: str) -> None:
    with app.app_context():
        account = f.make_account(db.session)
        connection = f.make_connection(db.session, account)
        add_run(db.session, connection, "running", progress(**{section: {"done": False}}))
        db.session.commit()
        account_id = account.id
    signed_in(client, account_id)
    name = SECTION_NAMES[section]
    page = text_of(client.get(url(app, endpoint)).text)
    assert fetching_words(section) + "." in page
    assert f"No {EMPTY_NAMES.get(section, name)} on record" not in page
    assert "did not share" not in page
    clinics = text_of(client.get("/connect").text)
    (said,) = clinic_sentences(clinics, f"Still being fetched from {RIVERSIDE}: ")
    assert name in said
    assert not clinic_sentences(clinics, f"{RIVERSIDE} did not share")


@pytest.mark.parametrize(("endpoint", "section"), WALK, ids=IDS)
def test_could_not_be_fetched(app: Flask, client: FlaskClient, endpoint: str, section: str) -> None:
    reason = BUSY.format(label=SECTION_NAMES[section])
    with app.app_context():
        account = f.make_account(db.session)
        connection = f.make_connection(db.session, account)
        add_run(
            db.session,
            connection,
            "incomplete",
            progress(**{section: {"done": True, "error": reason}}),
            error=f"{reason}; what arrived is kept.",
        )
        db.session.commit()
        account_id = account.id
    signed_in(client, account_id)
    name = SECTION_NAMES[section]
    page = text_of(client.get(url(app, endpoint)).text)
    your_name = your(name)
    assert f"{your_name[:1].upper()}{your_name[1:]} from {RIVERSIDE} could not be fetched. " in page
    assert f"{reason}." in page
    assert f"No {EMPTY_NAMES.get(section, name)} on record" not in page
    clinics = text_of(client.get("/connect").text)
    (said,) = clinic_sentences(
        clinics, f"Could not be fetched from {RIVERSIDE} in the last update: "
    )
    assert name in said
    assert not clinic_sentences(clinics, "Still being fetched")


@pytest.mark.parametrize(("endpoint", "section"), WALK, ids=IDS)
def test_none_on_record(app: Flask, client: FlaskClient, endpoint: str, section: str) -> None:
    with app.app_context():
        account = f.make_account(db.session)
        add_run(db.session, f.make_connection(db.session, account))
        db.session.commit()
        account_id = account.id
    signed_in(client, account_id)
    page = text_of(client.get(url(app, endpoint)).text)
    assert " on record." in page
    for gap in ("did not share", "still being fetched", "could not be fetched", "not been fetched"):
        assert gap not in page, gap
    clinics = text_of(client.get("/connect").text)
    assert not clinic_sentences(clinics, "Still being fetched")
    assert not clinic_sentences(clinics, "Could not be fetched")
    assert not clinic_sentences(clinics, f"{RIVERSIDE} did not share")


def test_none_on_record_in_the_sections_own_words(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        account = f.make_account(db.session)
        add_run(db.session, f.make_connection(db.session, account))
        db.session.commit()
        account_id = account.id
    signed_in(client, account_id)
    for endpoint, section in PAGES:
        page = text_of(client.get(url(app, endpoint) + "?show=all").text)
        empty = "care plans" if section == "careplans" else EMPTY_NAMES.get(section)
        assert f"No {empty or SECTION_NAMES[section]} on record." in page, endpoint


@pytest.fixture
def christin_and_lakeside_fetching(app: Flask, client: FlaskClient) -> None:
    """Christin's whole record from Riverside; Lakeside still fetching every section."""
    with app.app_context():
        s = db.session
        account, riverside, _ = f.patient_with(s, "christin_stiedemann")
        patient = f"Patient/{riverside.patient_id}"
        extra = [f.care_team(patient), f.coverage(patient), f.text_note(patient, "Better.")]
        extra.append(phq9("2020-01-01T10:00:00Z", 3))  # she answered no questionnaire
        extra.append(  # nor was imaged
            {
                "resourceType": "ImagingStudy",
                "id": "study-1",
                "status": "available",
                "subject": {"reference": patient},
                "started": "2020-01-01T10:00:00Z",
            }
        )
        f.add_resources(s, riverside, extra)
        add_run(s, riverside)
        add_run(s, f.make_connection(s, account, LAKESIDE), "running", {})
        s.commit()
        account_id = account.id
    signed_in(client, account_id)


@pytest.mark.parametrize(("endpoint", "section"), PAGES, ids=[p[0] for p in PAGES])
@pytest.mark.usefixtures("christin_and_lakeside_fetching")
def test_items_with_a_clinic_still_fetching(
    app: Flask, client: FlaskClient, endpoint: str, section: str
) -> None:
    page = text_of(client.get(url(app, endpoint) + "?show=all").text)
    assert fetching_words(section, LAKESIDE) + ", so more may appear here." in page
    assert f"No {EMPTY_NAMES.get(section, SECTION_NAMES[section])} on record" not in page


def test_no_clinic_connected_on_every_page(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        account = f.make_account(db.session)
        db.session.commit()
        account_id = account.id
    signed_in(client, account_id)
    for endpoint, _section in PAGES:
        page = text_of(client.get(url(app, endpoint)).text)
        assert "You have not connected a clinic yet, so there is nothing to show here." in page


# ---- the prepared pages follow the sync ------------------------------------------------------


def test_a_prepared_page_follows_the_sync_though_no_record_arrives(
    app: Flask, client: FlaskClient
) -> None:
    """A page prepared while a section was on its way is not served once the section is done:
    the stored records did not change, what the sync says of them did."""
    with app.app_context():
        account = f.make_account(db.session)
        connection = f.make_connection(db.session, account)
        run = add_run(db.session, connection, "running", progress(labs={"done": False}))
        db.session.commit()
        account_id, run_id = account.id, run.id
    signed_in(client, account_id)
    assert fetching_words("labs") in text_of(client.get("/records/labs").text)
    assert "still being fetched" in text_of(client.get("/records/").text)
    with app.app_context():
        from portal.models import SyncRun

        found = db.session.get(SyncRun, run_id)
        assert found is not None
        found.status, found.progress = "complete", progress()
        db.session.commit()
    assert "No lab results on record." in text_of(client.get("/records/labs").text)
    assert "still being fetched" not in text_of(client.get("/records/").text)


# ---- the care team and the appointments ------------------------------------------------------


def test_the_care_team_page_never_says_none_above_a_list_of_clinicians(
    app: Flask, client: FlaskClient
) -> None:
    with app.app_context():
        account, connection, _ = f.patient_with(db.session, "vito_feeney")
        add_run(db.session, connection)
        db.session.commit()
        account_id = account.id
    signed_in(client, account_id)
    page = text_of(client.get("/records/care-team").text)
    assert "Dr. " in page  # the clinicians the record names
    assert "No care team on record" not in page
    assert (
        "No care team is listed in your record, but the clinicians and clinics below are "
        "named in it." in page
    )


def test_the_summary_does_not_claim_there_are_no_appointments(
    app: Flask, client: FlaskClient
) -> None:
    with app.app_context():
        account, connection, _ = f.patient_with(db.session, "vito_feeney")
        add_run(db.session, connection)
        db.session.commit()
        account_id = account.id
    signed_in(client, account_id)
    page = text_of(client.get("/records/").text)
    assert "No upcoming appointments" not in page
    assert "Upcoming appointments Appointments are not available in the portal yet." in page


def test_section_words_are_plain(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        account = f.make_account(db.session, "Ana Lima")
        add_run(
            db.session,
            f.make_connection(db.session, account, granted_scope="openid patient/Patient.rs"),
        )
        lakeside = f.make_connection(db.session, account, LAKESIDE)
        add_run(db.session, lakeside, "running", {})
        db.session.commit()
        account_id = account.id
    signed_in(client, account_id)
    for endpoint, _section in [("records.summary", None), *PAGES]:
        page = client.get(url(app, endpoint)).text
        main = text_of(page.split('<div class="records-main">', 1)[1])  # not the navigation
        assert technical_words(main) == [], endpoint
