"""Lab panels: a report that lists its results is one panel with its results beneath, on the
lab results page, a page of its own and the visit it belongs to; each result stays a test."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import Account
from tests.phr import factories as f
from tests.phr.two_clinics import brant_at_both
from tests.sessions import begin

CBC = "Complete blood count (hemogram) panel - Blood"
HTMX = {"HX-Request": "true"}


def words(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def load(app: Flask, client: FlaskClient, drop: int = 0, **columns: Any) -> list[dict[str, Any]]:
    """Arron's record (one blood count of 11 results), less the first `drop` of its results."""
    resources = f.resolved_resources(f.bundle("arron_schamberger"))
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    gone = {ref["reference"] for ref in report["result"][:drop]}
    kept = [r for r in resources if f"Observation/{r['id']}" not in gone]
    with app.app_context():
        account = f.make_account(db.session, "Arron")
        connection = f.make_connection(db.session, account, **columns)
        f.add_resources(db.session, connection, kept)
        db.session.commit()
        account_id = account.id
    with client.session_transaction() as s:
        begin(s, account_id)
    return resources


def signed_in(app: Flask, client: FlaskClient, make: Callable[[], Account]) -> None:
    """Store the account `make` builds and sign the client in to it."""
    with app.app_context():
        account_id = make().id
        db.session.commit()
    with client.session_transaction() as s:
        begin(s, account_id)


def results_of(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    by_ref = {f"Observation/{r['id']}": r for r in resources}
    return [by_ref[ref["reference"]] for ref in report["result"]]


def test_the_lab_results_page_shows_the_panel_with_its_results_beneath(
    app: Flask, client: FlaskClient
) -> None:
    resources = load(app, client)
    page = client.get("/records/labs").text
    panel = page.split('class="card lab-panel"')[1].split("</article>")[0]
    assert CBC in words(panel) and "11 results" in words(panel)
    for result in results_of(resources):
        code = result["code"]["coding"][0]["code"]
        assert f'href="/records/labs/test/{code}"' in panel  # each result is its test too
        assert client.get(f"/records/labs/test/{code}").status_code == 200
    assert "Hemoglobin in Blood" in words(panel)
    assert 'href="/records/labs/panels">All 1 panel<' in page


def test_the_panels_page_lists_every_panel_newest_first(app: Flask, client: FlaskClient) -> None:
    signed_in(app, client, lambda: f.patient_with(db.session, "brant_jacobson", name="Brant")[0])
    text = words(client.get("/records/labs/panels").text)
    assert "4 panels" in text
    dates = re.findall(
        r"(?:Lipid Panel|Complete blood count \(hemogram\) panel - Blood) (\d+ \w+ \d{4})", text
    )
    assert dates == ["3 Nov 2019", "16 Oct 2016", "11 Oct 2015", "26 May 2013"]
    fragment = client.get("/records/labs/panels", headers=HTMX).text
    assert fragment.lstrip().startswith('<section id="lab-panels"')


def test_a_panel_both_clinics_sent_is_listed_and_counted_once(
    app: Flask, client: FlaskClient
) -> None:
    signed_in(app, client, lambda: brant_at_both(db.session).account)
    text = words(client.get("/records/labs/panels").text)
    assert "4 panels" in text
    assert text.count("Riverside General Hospital also Lakeside Family Clinic") == 4
    assert 'href="/records/labs/panels">All 4 panels<' in client.get("/records/labs").text


def test_a_visit_shows_its_report_with_the_results_beneath(app: Flask, client: FlaskClient) -> None:
    resources = load(app, client)
    pages = (client.get(f"/records/visits?page={n}").text for n in range(1, 5))
    visits = next(p for p in pages if "<dt>Reports</dt>" in p)
    reports = visits.split("<dt>Reports</dt>")[1].split("</dd>")[0]
    assert CBC in words(reports)
    parts = reports.split('class="panel-parts"')[1]
    assert parts.count("<li") == len(results_of(resources)) == 11
    assert "Hemoglobin in Blood: " in words(parts)


def test_a_result_the_record_lacks_is_said_to_be_missing(app: Flask, client: FlaskClient) -> None:
    load(app, client, drop=1)
    text = words(client.get("/records/labs/panels").text)
    assert "10 results" in text
    assert "1 more result of this panel is not in your record here." in text


def test_panels_say_when_the_clinic_did_not_share_results(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        account = f.make_account(db.session)
        f.make_connection(db.session, account, granted_scope="openid fhirUser patient/Patient.rs")
        db.session.commit()
        account_id = account.id
    with client.session_transaction() as s:
        begin(s, account_id)
    text = words(client.get("/records/labs/panels").text)
    assert "Riverside General Hospital did not share" in text
    assert "newest first" not in text  # no list, not even an empty one
    assert "Latest panels" not in client.get("/records/labs").text


@pytest.mark.parametrize("path", ["/records/labs/panels", "/records/labs/panels?page=2"])
def test_the_panels_page_needs_sign_in(app: Flask, path: str) -> None:
    answer = app.test_client().get(path)
    assert answer.status_code == 302 and "/signin" in answer.headers["Location"]
