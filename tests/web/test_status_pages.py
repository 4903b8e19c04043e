"""What the status parts of the pages say of each clinic: true of what is stored, counted once,
in plain words (the summary's top, the live sync status, "Your clinics")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.db import utcnow
from portal.extensions import db
from portal.models import QuarantinedResource
from portal.smart.errors import (
    ConnectionUnavailable,
    EhrUnavailable,
    FhirRequestError,
    NotConnected,
    ReconnectNeeded,
    SmartError,
)
from portal.smart.fhir import (
    EhrBusy,
    OutOfTime,
    RepeatedPage,
    TooLarge,
    TooManyPages,
    Unreadable,
    UnsafeLink,
)
from portal.sync import engine, reasons
from tests.phr import factories as f
from tests.phr.states import add_run, progress
from tests.plain import technical_words
from tests.sessions import begin
from tests.web.test_record_states import text_of

EHR = "Riverside General Hospital"
STATUS_PAGES = ("/records/", "/connect", "/sync/status", "/records/labs", "/records/visits")
LAB = {
    "resourceType": "Observation",
    "status": "final",
    "category": [{"coding": [{"code": "laboratory"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}], "text": "Glucose"},
    "effectiveDateTime": "2024-03-01",
    "valueQuantity": {"value": 5.4, "unit": "mmol/L"},
}


def labs(n: int) -> list[dict[str, Any]]:
    return [{**LAB, "id": f"glucose-{i}"} for i in range(n)]


def signed_in(client: FlaskClient, account_id: int) -> None:
    with client.session_transaction() as s:
        begin(s, account_id)


def main_text(client: FlaskClient, path: str) -> str:
    """What the patient reads in the page's main part (not the navigation)."""
    page = client.get(path)
    assert page.status_code == 200, path
    html = page.text
    for start in ('<div class="records-main">', "<main"):
        if start in html:
            html = html.split(start, 1)[1]
            break
    return text_of(html.split('<footer class="site-footer">', 1)[0])


# ---- records on screen: never "never" ---------------------------------------------------------

STOPPED = {
    "an interrupted first sync": (
        "incomplete",
        reasons.run_error(reasons.out_of_time(EHR), ["lab results", "visits"], True),
        progress(
            labs={"fetched": 3, "done": True},
            visits={"done": True, "error": reasons.out_of_time(EHR)},
        ),
    ),
    "a refused looping next link": (
        "incomplete",
        reasons.run_error(
            reasons.for_error(RepeatedPage("loop"), EHR, "visits"), ["lab results", "visits"], True
        ),
        progress(
            labs={"fetched": 3, "done": True},
            visits={"done": True, "error": reasons.for_error(RepeatedPage("loop"), EHR, "visits")},
        ),
    ),
    "a failed store": ("failed", engine.STORE_FAILED, progress(labs={"fetched": 3})),
}


@pytest.mark.parametrize("how", STOPPED)
def test_records_on_screen_are_never_said_to_be_nothing(
    app: Flask, client: FlaskClient, how: str
) -> None:
    status, error, found = STOPPED[how]
    with app.app_context():
        account = f.make_account(db.session)
        connection = f.make_connection(db.session, account)
        f.add_resources(db.session, connection, labs(3))  # what arrived before it stopped
        add_run(db.session, connection, status, found, error=error)
        db.session.commit()
        account_id = account.id
    signed_in(client, account_id)
    for path in ("/records/", "/connect", "/sync/status"):
        text = main_text(client, path)
        for untrue in ("never", "Nothing has been copied", "Nothing has been fetched"):
            assert untrue not in text, (path, untrue)
        assert "3 items" in text, path  # how much
        assert "just now" in text, path  # when
    summary = main_text(client, "/records/")
    assert "What you see here (3 items) was fetched just now." in summary
    if how != "a failed store":  # which parts are missing
        assert f"The last update from {EHR} did not finish: visits may be missing." in summary
        assert f"Could not be fetched from {EHR} in the last update: visits." in main_text(
            client, "/connect"
        )
    assert "Glucose" in main_text(client, "/records/labs")


def test_a_clinic_that_sent_nothing_yet_says_so(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        account = f.make_account(db.session)
        add_run(db.session, f.make_connection(db.session, account), "failed", {}, error="x")
        db.session.commit()
        account_id = account.id
    signed_in(client, account_id)
    assert "Nothing has been copied yet." in main_text(client, "/records/")
    assert "Nothing has been fetched yet." in main_text(client, "/connect")


def test_an_update_after_a_complete_one_says_when_that_was(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        account = f.make_account(db.session)
        connection = f.make_connection(db.session, account)
        f.add_resources(db.session, connection, labs(2))
        add_run(db.session, connection)
        connection.last_synced_at = utcnow() - timedelta(days=2)
        reason = reasons.for_error(EhrBusy("busy"), EHR, "lab results")
        add_run(
            db.session,
            connection,
            "incomplete",
            progress(labs={"error": reason}),
            error=reasons.run_error(reason, ["lab results"], True),
        )
        db.session.commit()
        account_id = account.id
    signed_in(client, account_id)
    summary = main_text(client, "/records/")
    assert (
        f"The last update from {EHR} did not finish: lab results may be out of date. "
        "What you see here is from 2 days ago." in summary
    )
    labs_page = main_text(client, "/records/labs")
    assert (
        f"Your lab results from {EHR} could not be fetched in the last update, so this list "
        "may be incomplete or out of date." in labs_page
    )


# ---- set aside: each once ---------------------------------------------------------------------


def quarantined(connection_id: int, rtype: str | None, rid: str | None, run_id: int) -> Any:
    return QuarantinedResource(
        connection_id=connection_id,
        sync_run_id=run_id,
        resource_type=rtype,
        resource_id=rid,
        reason="not valid FHIR R4",
        raw=None,
        fetched_at=utcnow(),
    )


def test_a_resource_set_aside_is_counted_once(app: Flask, client: FlaskClient) -> None:
    """A report feeds lab results and documents: it is one item, not two; one set aside by
    two updates is one; one stored readable since is none; one without an id is one."""
    with app.app_context():
        s = db.session
        account = f.make_account(s)
        connection = f.make_connection(s, account)
        runs = []
        for _ in range(2):
            runs.append(
                add_run(
                    s,
                    connection,
                    progress=progress(labs={"quarantined": 1}, documents={"quarantined": 1}),
                )
            )
            s.add(quarantined(connection.id, "DiagnosticReport", "bad-report", runs[-1].id))
        s.add(quarantined(connection.id, "Observation", "fixed-since", runs[0].id))
        f.add_resources(s, connection, [{**LAB, "id": "fixed-since"}])
        s.add(quarantined(connection.id, None, None, runs[1].id))
        s.add(quarantined(connection.id, None, None, runs[1].id))
        s.commit()
        account_id = account.id
    signed_in(client, account_id)
    words = f"3 items from {EHR} could not be read and were set aside."
    assert words in main_text(client, "/connect")
    assert words in main_text(client, "/sync/status")


def test_one_resource_set_aside(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        account = f.make_account(db.session)
        connection = f.make_connection(db.session, account)
        run = add_run(
            db.session,
            connection,
            progress=progress(labs={"quarantined": 1}, documents={"quarantined": 1}),
        )
        db.session.add(quarantined(connection.id, "DiagnosticReport", "bad", run.id))
        db.session.commit()
        account_id = account.id
    signed_in(client, account_id)
    words = f"1 item from {EHR} could not be read and was set aside."
    assert words in main_text(client, "/connect")


# ---- plain words, whatever the sync stored ----------------------------------------------------


def _error(exc: SmartError) -> str:
    return reasons.for_error(exc, EHR, "lab results")


# Every kind of reason the sync stores (portal.sync.engine, portal.sync.reasons), and what
# older runs stored before the words were plain.
ERROR_KINDS: dict[str, str] = {
    "could not be reached": _error(EhrUnavailable("could not be reached (ConnectError)")),
    "too busy": _error(EhrBusy("the EHR kept answering 429 after 4 attempts")),
    "answered 503": _error(EhrUnavailable("the EHR answered 503")),
    "unavailable, the rest": reasons.unavailable(EhrBusy("kept answering 429"), EHR),
    "refused": _error(FhirRequestError("the EHR answered 403", 403)),
    "not sent": _error(FhirRequestError("the EHR answered 404", 404)),
    "too many pages": _error(TooManyPages("more than 1000 pages")),
    "too large": _error(TooLarge("over the cap")),
    "unreadable": _error(Unreadable("not JSON (JSONDecodeError)")),
    "looping next link": _error(RepeatedPage("a repeated Bundle page")),
    "link elsewhere": _error(UnsafeLink("outside the FHIR base")),
    "out of time": _error(OutOfTime("deadline")),
    "connection ended": _error(ReconnectNeeded("invalid_grant")),
    "disconnected": _error(NotConnected("no tokens")),
    "unavailable": _error(ConnectionUnavailable("no tokens")),
    "stopped": reasons.stopped(EHR),
    "crashed": reasons.crashed("lab results"),
    "too many records": reasons.too_many_records(EHR),
    "store failed": engine.STORE_FAILED,
    "portal crashed": engine.CRASHED,
    "reconnect at start": ReconnectNeeded.public_message,
    "disconnected at start": NotConnected.public_message,
    "old: status code": "Some of your record could not be fetched (visits): the EHR answered 503.",
    "old: exception": "Nothing could be fetched: the EHR could not be reached (ConnectError).",
    "old: FHIR type": "Observation search did not answer a Bundle.",
}


@pytest.mark.parametrize("kind", ERROR_KINDS)
@pytest.mark.parametrize("fetched", [True, False], ids=["some fetched", "nothing fetched"])
def test_every_status_message_is_in_plain_words(
    app: Flask, client: FlaskClient, kind: str, fetched: bool
) -> None:
    reason = ERROR_KINDS[kind].rstrip(".")
    error = reasons.run_error(reason, ["lab results", "visits"], fetched)
    with app.app_context():
        account = f.make_account(db.session)
        connection = f.make_connection(db.session, account)
        if fetched:
            f.add_resources(db.session, connection, labs(2))
        found = progress(labs={"error": ERROR_KINDS[kind]}, visits={"done": False})
        add_run(db.session, connection, "incomplete" if fetched else "failed", found, error=error)
        db.session.commit()
        account_id = account.id
    signed_in(client, account_id)
    for path in STATUS_PAGES:
        text = main_text(client, path)
        assert technical_words(text) == [], (path, text)
    # The page of the part that failed says so, in the section's own name.
    assert f"lab results from {EHR} could not be fetched" in main_text(client, "/records/labs")
