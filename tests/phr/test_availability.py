"""One verdict per records section: not shared, still being fetched, could not be fetched,
none on record, or items (portal.phr.availability), from grants and sync runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.phr.access import open_record
from portal.phr.availability import Availability, SectionState, section_state
from portal.phr.records import Records
from portal.smart.scopes import SECTION_SOURCES
from tests.phr import factories as f
from tests.phr.states import BUSY, add_run, progress, scope_without
from tests.plain import assert_plain

LAKESIDE = "Lakeside Family Clinic"
RIVERSIDE = "Riverside General Hospital"
LAB = {
    "resourceType": "Observation",
    "id": "glucose-1",
    "status": "final",
    "category": [{"coding": [{"code": "laboratory"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}], "text": "Glucose"},
    "effectiveDateTime": "2024-03-01",
    "valueQuantity": {"value": 5.4, "unit": "mmol/L"},
}


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with app.app_context():
        yield db.session


def state_of(session: Session, account_id: int, section: str = "labs") -> SectionState:
    return section_state(Records(session, open_record(session, account_id)), section)


def test_no_clinic_connected(session: Session) -> None:
    nobody = f.make_account(session)
    state = state_of(session, nobody.id)
    assert state.state is Availability.NOT_CONNECTED and not state.connected
    assert state.words == ["You have not connected a clinic yet, so there is nothing to show here."]


def test_a_section_is_not_shared_when_the_grant_misses_any_of_its_searches(
    session: Session,
) -> None:
    """Lab results without a grant for laboratory Observations are not shared, though the
    reports (DiagnosticReport) were: "No lab results on record" would not be true."""
    account = f.make_account(session)
    scope = "openid patient/Patient.rs patient/DiagnosticReport.rs patient/Condition.rs"
    connection = f.make_connection(session, account, granted_scope=scope)
    add_run(session, connection)
    state = state_of(session, account.id)
    assert state.state is Availability.NOT_SHARED
    (part,) = state.clinics
    assert part.state is Availability.NOT_SHARED and part.clinic == RIVERSIDE
    assert state.words == [f"{RIVERSIDE} did not share lab results with this app."]
    assert state.hint and "lab results" in state.hint
    # Documents have two searches: without one of them, only part of it was shared.
    documents = state_of(session, account.id, "documents")
    assert documents.state is Availability.NOT_SHARED and documents.clinics[0].partly
    assert documents.words == [f"{RIVERSIDE} did not share all of your documents with this app."]
    # Referred-to medicines (read by id, never searched) are no search of medications.
    f.make_connection(
        session,
        account,
        LAKESIDE,
        granted_scope="openid patient/MedicationRequest.rs patient/Patient.rs",
    )
    add_run(session, account.connections[-1])
    riverside, lakeside = state_of(session, account.id, "medications").clinics
    assert riverside.state is Availability.NOT_SHARED and lakeside.state is Availability.NONE


def test_a_category_restricted_grant_shares_only_its_sections(session: Session) -> None:
    account = f.make_account(session)
    connection = f.make_connection(
        session, account, granted_scope=scope_without("labs") + " patient/DiagnosticReport.rs"
    )
    add_run(session, connection)
    assert state_of(session, account.id, "labs").state is Availability.NOT_SHARED
    assert state_of(session, account.id, "vitals").state is Availability.NONE


def test_still_being_fetched_while_the_sync_has_not_finished_the_section(
    session: Session,
) -> None:
    """The summary once said "No active problems" while the problems were on their way."""
    account = f.make_account(session)
    connection = f.make_connection(session, account)
    add_run(session, connection, "running", progress(problems={"fetched": 8, "done": False}))
    state = state_of(session, account.id, "problems")
    assert state.state is Availability.FETCHING
    assert state.words == [f"Your health problems from {RIVERSIDE} are still being fetched."]
    assert state_of(session, account.id, "labs").state is Availability.NONE  # that one is done
    # A queued run, or one that has not reported the section yet: on its way too.
    add_run(session, connection, "queued")
    assert state_of(session, account.id, "labs").state is Availability.FETCHING


def test_a_care_team_is_still_being_fetched_in_the_singular(session: Session) -> None:
    account = f.make_account(session)
    add_run(session, f.make_connection(session, account), "running", {})
    state = state_of(session, account.id, "careteam")
    assert state.words == [f"Your care team from {RIVERSIDE} is still being fetched."]


def test_a_clinic_never_synced_has_not_sent_anything_yet(session: Session) -> None:
    account = f.make_account(session)
    f.make_connection(session, account)
    state = state_of(session, account.id)
    assert state.state is Availability.FETCHING and not state.clinics[0].running
    assert state.words == [f"Your lab results from {RIVERSIDE} have not been fetched yet."]


def test_could_not_be_fetched_when_the_search_failed(session: Session) -> None:
    account = f.make_account(session)
    connection = f.make_connection(session, account)
    reason = BUSY.format(label="lab results")
    add_run(
        session,
        connection,
        "incomplete",
        progress(labs={"done": True, "error": reason}),
        error=f"{reason}; what arrived is kept.",
    )
    state = state_of(session, account.id)
    assert state.state is Availability.FAILED
    assert state.clinics[0].reason == reason
    assert state.words == [f"Your lab results from {RIVERSIDE} could not be fetched. {reason}."]
    assert_plain(" ".join(state.words))
    assert state_of(session, account.id, "visits").state is Availability.NONE


def test_a_run_that_stopped_before_any_search_fetched_nothing(session: Session) -> None:
    account = f.make_account(session)
    connection = f.make_connection(session, account)
    add_run(session, connection, "failed", {}, error="The update was stopped.")
    for section in SECTION_SOURCES:
        assert state_of(session, account.id, section).state is Availability.FAILED, section


def test_none_on_record_only_when_every_source_answered(session: Session) -> None:
    account = f.make_account(session)
    add_run(session, f.make_connection(session, account))
    state = state_of(session, account.id)
    assert state.state is Availability.NONE
    assert state.words == ["No lab results on record."]
    lakeside = f.make_connection(session, account, LAKESIDE)
    add_run(session, lakeside, "running", progress(labs={"done": False}))
    state = state_of(session, account.id)
    assert state.state is Availability.FETCHING
    assert state.words == [
        f"Your lab results from {LAKESIDE} are still being fetched.",
        f"{RIVERSIDE} has no lab results on record.",
    ]


def test_items_with_a_clinic_missing_say_the_list_may_be_incomplete(session: Session) -> None:
    account = f.make_account(session)
    riverside = f.make_connection(session, account)
    add_run(session, riverside)
    f.add_resources(session, riverside, [LAB])
    state = state_of(session, account.id)
    assert state.state is Availability.HAS_ITEMS and state.partial_words == []
    assert state.words == []
    lakeside = f.make_connection(session, account, LAKESIDE, granted_scope=scope_without("labs"))
    add_run(session, lakeside)
    hillside = f.make_connection(session, account, "Hillside Clinic")
    add_run(session, hillside, "running", progress(labs={"done": False}))
    state = state_of(session, account.id)
    assert state.state is Availability.HAS_ITEMS
    assert [c.state for c in state.clinics] == [
        Availability.HAS_ITEMS,
        Availability.NOT_SHARED,
        Availability.FETCHING,
    ]
    assert state.partial_words == [
        f"{LAKESIDE} did not share lab results with this app, so this list may be incomplete.",
        "Your lab results from Hillside Clinic are still being fetched, so more may appear here.",
    ]


def test_entered_in_error_is_no_item(session: Session) -> None:
    account = f.make_account(session)
    connection = f.make_connection(session, account)
    add_run(session, connection)
    f.add_resources(session, connection, [{**LAB, "status": "entered-in-error"}])
    assert state_of(session, account.id).state is Availability.NONE


def test_the_patients_own_entries_are_items(session: Session) -> None:
    from portal.phr.entries.service import own_source

    account = f.make_account(session)
    own = own_source(session, account)
    f.add_resources(session, own, [{**LAB, "id": "mine"}])
    state = state_of(session, account.id)
    assert state.state is Availability.HAS_ITEMS and state.own_items and not state.connected


def test_clinics_alike_are_named_together(session: Session) -> None:
    account = f.make_account(session)
    for name in (RIVERSIDE, LAKESIDE):
        add_run(session, f.make_connection(session, account, name, granted_scope="openid"))
    state = state_of(session, account.id, "visits")
    assert state.words == [f"{RIVERSIDE} and {LAKESIDE} did not share visits with this app."]
