"""The records pages against Synthea patients: content, empty states, escaping, htmx, headers."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import SyncRun
from portal.phr import labs
from portal.phr.classify import classify
from tests.phr import factories as f
from tests.phr.states import add_run
from tests.sessions import begin

HTMX = {"HX-Request": "true"}


def sign_in(client: FlaskClient, account_id: int) -> None:
    with client.session_transaction() as s:
        begin(s, account_id)


def load(app: Flask, bundle: str, **kwargs: Any) -> tuple[int, list[dict[str, Any]]]:
    with app.app_context():
        account, _, resources = f.patient_with(db.session, bundle, **kwargs)
        db.session.commit()
        return account.id, resources


def count(resources: list[dict[str, Any]], category: str) -> int:
    return f.count_category(resources, category)


@pytest.fixture
def vito(app: Flask, client: FlaskClient) -> list[dict[str, Any]]:
    account_id, resources = load(app, "vito_feeney", name="Vito")
    sign_in(client, account_id)
    return resources


# ---- content ------------------------------------------------------------------------------


def test_summary(client: FlaskClient, vito: list[dict[str, Any]]) -> None:
    page = client.get("/records/")
    assert page.status_code == 200
    text = page.text
    assert "Vito Feeney" in text and "Born 19 Sep 1910" in text and "Died" in text
    assert "Allergies" in text and "No current allergies on record." in text
    assert "Metastasis from malignant tumor of prostate" in text
    assert "Current medications" in text and "Metformin" in text
    assert "Latest vital signs" in text and "mmHg" in text
    assert "Recent lab results" in text
    assert "Immunizations given" in text
    assert "Appointments are not available in the portal yet." in text
    # Records are on screen, though no update ran: never "last updated never".
    assert "Riverside General Hospital" in text and "updated never" not in text.lower()
    assert f"No update has finished yet; {len(vito):,} items were fetched" in text


def test_lab_results_shown_equal_the_lab_observations(
    client: FlaskClient, vito: list[dict[str, Any]]
) -> None:
    expected = sum(count(vito, category) for category in labs.RESULTS)
    first = client.get("/records/labs").text
    assert f"{expected} results from" in first
    pages = int(re.search(r"Page 1 of (\d+)", first).group(1))  # type: ignore[union-attr]
    keys: list[str] = []
    for n in range(1, pages + 1):
        keys += re.findall(
            r'href="/records/labs/test/([^"]+)"', client.get(f"/records/labs?page={n}").text
        )
    shown = 0
    for key in dict.fromkeys(keys):
        history = client.get(f"/records/labs/test/{key}", headers=HTMX)
        assert history.status_code == 200
        shown += history.text.count('<tr class="result')
    assert shown == expected


def test_lab_test_page_has_an_accessible_chart_and_a_table(
    client: FlaskClient, vito: list[dict[str, Any]]
) -> None:
    page = client.get("/records/labs/test/2339-0")
    assert page.status_code == 200
    text = page.text
    assert '<svg class="chart-svg"' in text and 'role="img"' in text
    assert re.search(r'aria-labelledby="lab-2339-0-0-title lab-2339-0-0-desc"', text)
    assert "<title id=" in text and "<desc id=" in text and "Glucose over time" in text
    glucose = [r for r in vito if r.get("code", {}).get("coding", [{}])[0].get("code") == "2339-0"]
    assert text.count('<tr class="result') == len(glucose)
    assert "<script>" not in text.split("</head>")[1]


def test_vitals_page_charts(client: FlaskClient, vito: list[dict[str, Any]]) -> None:
    text = client.get("/records/vitals").text
    for name in ("Blood pressure", "Weight", "Height", "Body mass index (BMI)"):
        assert name in text
    assert "Top number (systolic)" in text and "Bottom number (diastolic)" in text
    assert text.count('role="img"') >= 4
    assert 'id="vital-pain"' in text  # the clinic's pain scores, charted with the patient's own
    history = client.get("/records/vitals/weight").text
    weights = [r for r in vito if r.get("code", {}).get("coding", [{}])[0].get("code") == "29463-7"]
    assert history.count('<tr class="reading"') == len(weights)
    assert client.get("/records/vitals/nonsense").status_code == 404


def test_lists(client: FlaskClient, vito: list[dict[str, Any]]) -> None:
    problems = client.get("/records/problems?show=all").text
    assert problems.count('<li class="item">') == count(vito, "problems")
    meds = client.get("/records/medications?show=all").text
    assert meds.count('<li class="item">') == count(vito, "medications")
    imm = client.get("/records/immunizations").text
    assert imm.count("<tr>") - 1 == count(vito, "immunizations")  # minus the header row
    visits = client.get("/records/visits").text
    assert f"{count(vito, 'visits')} visits, newest first" in visits
    assert "Measurements and results" in visits
    procedures = client.get("/records/procedures").text
    assert f"{count(vito, 'procedures')} procedures" in procedures
    plans = client.get("/records/care-plans?show=all").text
    assert "Goals" in plans and "Care plans" in plans
    careplans = [r for r in vito if r["resourceType"] == "CarePlan"]
    active = [r for r in careplans if r["status"] == "active"]
    shown_all = plans.count('<li class="item')
    assert shown_all == len(careplans) + count(vito, "goals")
    active_page = client.get("/records/care-plans").text
    assert active_page.count('<li class="item') == len(active) + count(vito, "goals")
    team = client.get("/records/care-team").text
    assert "Clinicians and clinics in your record" in team and "Dr. " in team
    assert "No care team on record" not in team  # above a list of clinicians
    assert "No care team is listed in your record, but the clinicians and clinics" in team


def test_allergies_of_christin_with_criticality(app: Flask, client: FlaskClient) -> None:
    account_id, resources = load(app, "christin_stiedemann")
    sign_in(client, account_id)
    text = client.get("/records/allergies").text
    assert text.count('class="item allergy') == count(resources, "allergies") == 6
    assert "Allergy to bee venom" in text and "Low risk" in text
    summary = client.get("/records/").text
    assert "Shellfish allergy" in summary and "Low risk" in summary


def test_documents_page_and_pdf_download(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        account = f.make_account(db.session)
        connection = f.make_connection(db.session, account)
        f.add_resources(
            db.session,
            connection,
            [
                f.text_note("Patient/p", "Feeling better.\n<script>alert('x')</script>"),
                f.html_note("Patient/p", "<p>Home <img src=x onerror=alert(1)></p>"),
                f.pdf_report("Patient/p"),
            ],
        )
        db.session.commit()
        account_id = account.id
    sign_in(client, account_id)
    page = client.get("/records/documents")
    text = page.text
    assert "Feeling better." in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in text
    assert "onerror" not in text and "<img" not in text
    links = re.findall(r'href="(/records/documents/\d+/attachments/\d+)"', text)
    assert len(links) == 3
    downloads = [client.get(link) for link in links]
    pdf = next(d for d in downloads if d.data.startswith(b"%PDF"))
    assert pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.headers["Content-Disposition"] == 'attachment; filename="chest-x-ray.pdf"'
    assert "sandbox" in pdf.headers["Content-Security-Policy"]
    html = next(d for d in downloads if b"<p>" in d.data)
    assert html.headers["Content-Type"] == "application/octet-stream"
    assert html.headers["Content-Disposition"].startswith("attachment;")


# ---- empty states and grants --------------------------------------------------------------

SECTION_PAGES = {
    "/records/problems?show=all": "health problems",
    "/records/medications?show=all": "medications",
    "/records/allergies": "allergies",
    "/records/immunizations": "immunizations",
    "/records/labs": "lab results",
    "/records/vitals": "vital signs",
    "/records/visits": "visits",
    "/records/procedures": "procedures",
    "/records/documents": "documents",
    "/records/care-team": "your care team",
    "/records/coverage": "insurance coverage",
    "/records/social-history": "social history",
    "/records/questionnaires": "questionnaires",
    "/records/bills": "bills and claims",
    "/records/imaging": "imaging studies",
}
EMPTY = {"your care team": "care team"}


@pytest.mark.parametrize(("url", "name"), SECTION_PAGES.items())
def test_empty_state(app: Flask, client: FlaskClient, url: str, name: str) -> None:
    with app.app_context():
        account = f.make_account(db.session)
        add_run(db.session, f.make_connection(db.session, account))  # it answered: nothing
        db.session.commit()
        account_id = account.id
    sign_in(client, account_id)
    page = client.get(url)
    assert page.status_code == 200
    assert f"No {EMPTY.get(name, name)} on record." in page.text
    assert "did not share" not in page.text


@pytest.mark.parametrize(("url", "name"), SECTION_PAGES.items())
def test_not_shared_wording(app: Flask, client: FlaskClient, url: str, name: str) -> None:
    with app.app_context():
        account = f.make_account(db.session)
        f.make_connection(db.session, account, granted_scope="openid fhirUser patient/Patient.rs")
        db.session.commit()
        account_id = account.id
    sign_in(client, account_id)
    text = client.get(url).text
    assert f"Riverside General Hospital did not share {name} with this app." in text
    assert f"No {EMPTY.get(name, name)} on record" not in text


def test_no_clinic_connected(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        account = f.make_account(db.session, "Ana O'Neil")
        db.session.commit()
        account_id = account.id
    sign_in(client, account_id)
    summary = client.get("/records/").text
    assert "You have not connected a clinic yet" in summary
    assert "Ana O&#39;Neil" in summary
    assert "You have not connected a clinic yet" in client.get("/records/immunizations").text


def test_two_clinics_merged_with_their_names(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        s = db.session
        account = f.make_account(s)
        one = f.make_connection(s, account, "Riverside General Hospital")
        two = f.make_connection(
            s,
            account,
            "Lakeside Family Clinic",
            granted_scope="openid patient/Immunization.rs patient/Patient.rs",
        )
        arron = f.resolved_resources(f.bundle("arron_schamberger"))
        shots = [r for r in arron if r["resourceType"] == "Immunization"]
        f.add_resources(s, one, shots[:3])
        f.add_resources(s, two, [f.variant(r) for r in shots[3:5]])
        s.commit()
        account_id = account.id
    sign_in(client, account_id)
    text = client.get("/records/immunizations").text
    rows = re.findall(r"<tr>\s*<th scope=\"row\">.*?</tr>", text, re.S)
    assert len(rows) == 5
    assert sum("Riverside General Hospital" in r for r in rows) == 3
    assert sum("Lakeside Family Clinic" in r for r in rows) == 2
    problems = client.get("/records/problems").text
    assert "Lakeside Family Clinic did not share health problems with this app." in problems
    assert "Riverside General Hospital has no health problems on record." in problems
    assert "did not share" not in text  # both shared their immunizations


def test_entered_in_error_hidden_and_data_absent_reason_shown(
    app: Flask, client: FlaskClient
) -> None:
    with app.app_context():
        s = db.session
        account, connection, resources = f.patient_with(s, "arron_schamberger")
        lab = next(r for r in resources if classify(r).category == "labs")
        missing = f.variant(lab, effectiveDateTime="2031-01-01T00:00:00Z")
        del missing["valueQuantity"]
        missing["dataAbsentReason"] = {"coding": [{"code": "asked-unknown"}]}
        wrong = f.variant(
            lab,
            effectiveDateTime="2032-01-01T00:00:00Z",
            status="entered-in-error",
            valueQuantity={**lab["valueQuantity"], "value": 987654},
        )
        f.add_resources(s, connection, [missing, wrong])
        s.commit()
        account_id = account.id
    sign_in(client, account_id)
    for url in (
        "/records/",
        "/records/labs",
        f"/records/labs/test/{lab['code']['coding'][0]['code']}",
    ):
        text = client.get(url).text
        assert "Not recorded (asked but unknown)" in text
        assert "987654" not in text and "987,654" not in text


def test_everything_is_escaped(app: Flask, client: FlaskClient) -> None:
    evil = "<script>alert('x')</script>"
    with app.app_context():
        s = db.session
        account = f.make_account(s, "Raeann O'Kon")
        connection = f.make_connection(s, account, "St. Mary's <Clinic>")
        arron = f.resolved_resources(f.bundle("raeann_okon"))
        f.add_resources(s, connection, [r for r in arron if r["resourceType"] == "Patient"])
        condition = {
            "resourceType": "Condition",
            "id": "evil",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"text": evil},
            "onsetDateTime": "2020-01-01",
            "note": [{"text": evil}],
        }
        lab = {
            "resourceType": "Observation",
            "id": "evil-lab",
            "status": "final",
            "category": [{"coding": [{"code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "x<y>"}], "text": evil},
            "effectiveDateTime": "2020-01-01",
            "valueString": evil,
        }
        f.add_resources(s, connection, [condition, lab])
        s.commit()
        account_id = account.id
    sign_in(client, account_id)
    for url in ("/records/", "/records/problems", "/records/labs", "/records/labs/test/x<y>"):
        page = client.get(url)
        assert page.status_code == 200, url
        body = page.text.split("</head>", 1)[1]
        assert "<script>" not in body, url
        assert "O&#39;Kon" in body
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in client.get("/records/problems").text
    assert "St. Mary&#39;s &lt;Clinic&gt;" in client.get("/records/problems").text


# ---- htmx and headers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "marker"),
    [
        ("/records/problems?show=past", 'id="problems-list"'),
        ("/records/medications?show=past", 'id="medications-list"'),
        ("/records/labs?page=2", 'id="lab-tests"'),
        ("/records/labs/test/2339-0", '<table class="data results'),
        ("/records/vitals/weight", '<table class="data readings'),
        ("/records/visits?page=2", 'id="visits-list"'),
        ("/records/procedures?page=2", 'id="procedures-list"'),
        ("/records/immunizations?page=1", 'id="immunizations-list"'),
        ("/records/care-plans?show=past", 'id="plans-list"'),
    ],
)
def test_htmx_gets_only_the_fragment(
    client: FlaskClient, vito: list[dict[str, Any]], url: str, marker: str
) -> None:
    fragment = client.get(url, headers=HTMX)
    assert fragment.status_code == 200
    assert "HX-Request" in fragment.headers["Vary"]
    assert marker in fragment.text
    assert "<html" not in fragment.text and "records-nav" not in fragment.text
    assert "patient-banner" not in fragment.text
    full = client.get(url)
    assert "<html" in full.text and marker in full.text and "records-nav" in full.text
    assert "HX-Request" in full.headers["Vary"]
    boosted = client.get(url, headers={**HTMX, "HX-Boosted": "true"})
    assert "<html" in boosted.text


def test_tabs_and_pager_work_without_javascript(
    client: FlaskClient, vito: list[dict[str, Any]]
) -> None:
    text = client.get("/records/problems").text
    assert 'href="/records/problems?show=past"' in text
    assert 'hx-get="/records/problems?show=past"' in text
    labs = client.get("/records/labs").text
    assert 'href="/records/labs?page=2"' in labs
    assert 'hx-target="#lab-tests"' in labs
    assert "Page 1 of" in labs


def test_headers_allow_framing_by_registered_ehrs_only(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        account = f.make_account(db.session)
        f.make_connection(db.session, account, fhir_base="https://ehr.example.org:8443/r4/fhir")
        f.make_ehr(db.session, "Other", "http://127.0.0.1:5001/fhir")
        db.session.commit()
        account_id = account.id
    sign_in(client, account_id)
    answer = client.get("/records/")
    csp = answer.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' http://127.0.0.1:5001 https://ehr.example.org:8443" in csp
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert answer.headers["Cache-Control"] == "private, no-store"


def test_records_pages_link_the_ehr_style(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        account = f.make_account(db.session)
        connection = f.make_connection(
            db.session, account, smart_style_url="https://ehr.example/style.json?a=1&b=2"
        )
        db.session.commit()
        account_id, connection_id = account.id, connection.id
    sign_in(client, account_id)
    for path in ("/records/", "/records/labs"):
        text = client.get(path).text
        assert f'<link rel="stylesheet" href="/style/{connection_id}.css">' in text


def test_patient_banner_left_to_the_ehr_when_it_asks(app: Flask, client: FlaskClient) -> None:
    account_id, _ = load(app, "arron_schamberger", need_patient_banner=False)
    sign_in(client, account_id)
    assert "patient-banner" not in client.get("/records/").text


def test_child_banner(app: Flask, client: FlaskClient) -> None:
    account_id, _ = load(app, "arron_schamberger")
    sign_in(client, account_id)
    text = client.get("/records/").text
    assert "Arron Schamberger" in text and "(age " in text and "Male" in text


def test_records_of_a_disconnected_clinic_stay(app: Flask, client: FlaskClient) -> None:
    account_id, _ = load(app, "vito_feeney", name="Vito", status="disconnected")
    sign_in(client, account_id)
    summary = client.get("/records/").text
    assert "You disconnected Riverside General Hospital" in summary
    assert "Metformin" in summary
    assert "Metformin" in client.get("/records/medications").text


TITLES = {
    "/records/": "Summary",
    "/records/problems": "Problems",
    "/records/medications": "Medications",
    "/records/allergies": "Allergies",
    "/records/immunizations": "Immunizations",
    "/records/labs": "Lab results",
    "/records/vitals": "Vital signs",
    "/records/visits": "Visits",
    "/records/procedures": "Procedures",
    "/records/documents": "Documents",
    "/records/care-plans": "Care plans and goals",
    "/records/care-team": "Care team",
    "/records/coverage": "Coverage",
    "/records/social-history": "Social history",
    "/records/questionnaires": "Questionnaires",
    "/records/bills": "Bills and claims",
    "/records/imaging": "Imaging",
    "/records/vitals/weight": "Weight · Vital signs",
}


def test_every_page_has_its_title(client: FlaskClient, vito: list[dict[str, Any]]) -> None:
    for path, title in TITLES.items():
        assert f"<title>{title} · My Health Record</title>" in client.get(path).text, path


# ---- launch context ---------------------------------------------------------------------------


def launched_from(app: Flask, client: FlaskClient, context: list[dict[str, str]]) -> int:
    """Christin's record, opened by an EHR launch that had `context` open."""
    with app.app_context():
        account, connection, _ = f.patient_with(
            db.session, "christin_stiedemann", launch_context=context
        )
        db.session.commit()
        ids = account.id, connection.id
    with client.session_transaction() as s:
        begin(s, ids[0])
        s["launched_from"] = ids[1]
    return ids[1]


def first(rtype: str) -> dict[str, Any]:
    resources = f.bundle("christin_stiedemann")["entry"]
    return next(e["resource"] for e in resources if e["resource"]["resourceType"] == rtype)


def test_summary_says_what_the_launching_clinic_had_open(app: Flask, client: FlaskClient) -> None:
    visit, report = first("Encounter"), first("DiagnosticReport")
    launched_from(
        app,
        client,
        [
            {"type": "Encounter", "id": visit["id"], "role": "launch"},
            {"type": "DiagnosticReport", "id": report["id"], "role": "launch"},
            {"type": "Observation", "id": "not-fetched", "role": "launch"},
        ],
    )
    page = client.get("/records/")
    panel = re.search(r'<section class="launch-context".*?</section>', page.text, re.S)
    assert panel, page.text[:2000]
    text = re.sub(r"\s+", " ", panel.group(0))
    assert "<strong>Riverside General Hospital</strong> opened your record from:" in text
    visit_type = visit["type"][0].get("text") or visit["type"][0]["coding"][0]["display"]
    title = re.escape(visit_type)
    found = re.search(
        rf'<a href="(/records/visits[^"#]*)#(visit-\d+)">Your visit on [^<]*: {title}</a>', text
    )
    assert found, text
    assert "?page=" in found.group(1)  # the oldest visit: not on the first page
    # The link opens the page of the visits list that shows that visit, at its place.
    visits_page = client.get(found.group(1).replace("&amp;", "&"))
    place = re.search(
        rf'<li class="visit card" id="{found.group(2)}">.*?</li>', visits_page.text, re.S
    )
    assert place and visit_type in place.group(0)
    assert re.search(r'<a href="/records/labs">A report: [^<]+</a>', text)
    assert "<li>A result that is not in the record your clinic shared</li>" in text


def test_what_the_clinic_had_open_arrives_with_the_sync(app: Flask, client: FlaskClient) -> None:
    connection_id = launched_from(
        app, client, [{"type": "Observation", "id": "not-fetched-yet", "role": "launch"}]
    )
    with app.app_context():
        db.session.add(SyncRun(connection_id=connection_id, status="running", progress={}))
        db.session.commit()
    text = client.get("/records/").text
    assert "<li>A result: it shows here once your records are fetched</li>" in text


def test_what_the_clinic_had_open_is_escaped(app: Flask, client: FlaskClient) -> None:
    visit = first("Encounter")
    with app.app_context():
        account, connection, _ = f.patient_with(
            db.session,
            "christin_stiedemann",
            launch_context=[{"type": "Encounter", "id": "evil", "role": "launch"}],
        )
        evil = {**visit, "id": "evil", "type": [{"text": "<script>alert(1)</script>"}]}
        f.add_resources(db.session, connection, [evil])
        db.session.commit()
        ids = account.id, connection.id
    with client.session_transaction() as s:
        begin(s, ids[0])
        s["launched_from"] = ids[1]
    text = client.get("/records/").text
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_launch_context_only_for_the_session_that_was_launched(
    app: Flask, client: FlaskClient
) -> None:
    visit = first("Encounter")
    launched_from(app, client, [{"type": "Encounter", "id": visit["id"], "role": "launch"}])
    assert "launch-context" in client.get("/records/").text
    with client.session_transaction() as s:
        del s["launched_from"]  # the same person, signed in another time
    assert "launch-context" not in client.get("/records/").text
    with app.app_context():  # a launch of somebody else's connection says nothing here
        _, connection, _ = f.patient_with(
            db.session,
            "raeann_okon",
            launch_context=[{"type": "Encounter", "id": visit["id"], "role": "launch"}],
        )
        db.session.commit()
        other_connection = connection.id
    with client.session_transaction() as s:
        s["launched_from"] = other_connection
    page = client.get("/records/")
    assert page.status_code == 200 and "launch-context" not in page.text
