"""Every records page and the own-entries pages in the patient's units and time zone; the
account page changes both; the browser's zone is taken at sign-in."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask import Flask, url_for
from flask.testing import FlaskClient

from portal.accounts import passwords
from portal.extensions import db
from portal.models import Account, EhrConnection, FhirRecord, UnitSystem
from portal.phr.classify import classify
from portal.web.records import SECTIONS
from tests.phr import factories as f
from tests.sessions import begin

# 22:30 on 4 March 2026 in Chicago (CST) is 04:30 UTC on 5 March.
MOMENT = "2026-03-05T04:30:00Z"
CHICAGO_DAY, UTC_DAY = "4 Mar 2026", "5 Mar 2026"
_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$")
PER_CATEGORY = 4  # of each category of the bundles: enough for every page, quick to render
PASSWORD = "a long and unusual passphrase 42"


def at_the_moment(value: Any) -> Any:
    """`value` with every FHIR dateTime that has a time set to MOMENT (dates left alone)."""
    if isinstance(value, dict):
        return {k: at_the_moment(v) for k, v in value.items()}
    if isinstance(value, list):
        return [at_the_moment(v) for v in value]
    if isinstance(value, str) and _DATETIME.match(value):
        return MOMENT
    return value


def observation(code: str, name: str, category: str, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": uuid.uuid4().hex,
        "status": "final",
        "category": [{"coding": [{"code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": name}]},
        "subject": {"reference": "Patient/x"},
        "effectiveDateTime": MOMENT,
        **value,
    }


def quantity(value: float, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": "http://unitsofmeasure.org", "code": code}


def record_at_one_moment() -> list[dict[str, Any]]:
    """Resources for every records page (Synthea's, and the kinds Synthea v2.4 lacks), each
    done at MOMENT; measurements of known size for the units."""
    chosen: list[dict[str, Any]] = []
    taken: dict[str, int] = {}
    for name in ("vito_feeney", "christin_stiedemann"):
        for resource in f.resolved_resources(f.bundle(name)):
            category = classify(resource).category
            if resource["resourceType"] == "Patient" and chosen:
                continue  # one patient
            if taken.get(category, 0) < PER_CATEGORY:
                taken[category] = taken.get(category, 0) + 1
                chosen.append(at_the_moment(resource))
    patient = "Patient/x"
    extra = [
        f.text_note(patient, "Seen today."),
        f.coverage(patient),
        f.care_team(patient),
        observation(
            "72166-2",
            "Tobacco smoking status NHIS",
            "social-history",
            valueCodeableConcept={"text": "Never smoker"},
        ),
        observation(
            "44261-6",
            "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]",
            "survey",
            valueQuantity={"value": 3, "unit": "{score}"},
        ),
        observation("29463-7", "Body weight", "vital-signs", valueQuantity=quantity(80, "kg")),
        observation("8302-2", "Body height", "vital-signs", valueQuantity=quantity(180, "cm")),
        observation("8310-5", "Body temperature", "vital-signs", valueQuantity=quantity(37, "Cel")),
        observation(
            "2339-0",
            "Glucose [Mass/volume] in Blood",
            "laboratory",
            valueQuantity=quantity(90, "mg/dL"),
        ),
    ]
    extra[0]["date"] = MOMENT
    extra[1]["period"] = {"start": MOMENT}
    extra[2]["period"] = {"start": MOMENT}
    return chosen + extra


@pytest.fixture
def patient(app: Flask, client: FlaskClient) -> int:
    """A patient in Chicago who reads US units, everything in the record done at MOMENT."""
    with app.app_context():
        account = f.make_account(db.session, "Dana", email="dana@example.org")
        account.password_hash = passwords.hash_password(PASSWORD)
        account.time_zone = "America/Chicago"
        account.units = UnitSystem.US
        connection = f.make_connection(db.session, account)
        f.add_resources(db.session, connection, record_at_one_moment())
        db.session.commit()
        account_id = account.id
    with client.session_transaction() as s:
        begin(s, account_id)
    return account_id


def main(html: str) -> str:
    """The page's own content (no navigation, no sync status)."""
    found = re.search(r"<main[^>]*>(.*)</main>", html, re.S)
    assert found, html[:200]
    return found.group(1)


def records_pages(app: Flask, client: FlaskClient) -> list[str]:
    """Every section page, and every records page they link to (tests, vital signs...)."""
    with app.test_request_context():
        sections = [url_for(endpoint) for endpoint, _label, _section in SECTIONS]
    pages = list(sections)
    for path in sections:
        for link in re.findall(r'href="(/records/[^"#?]+)', client.get(path).text):
            if link not in pages and "/attachments/" not in link:
                pages.append(link)
    assert "/records/labs/test/2339-0" in pages and "/records/vitals/weight" in pages
    return pages


def choose(client: FlaskClient, units: str, zone: str) -> None:
    answer = client.post("/account/shown", data={"units": units, "zone": zone})
    assert answer.status_code == 302, answer.text


def test_every_records_page_shows_the_patients_day(
    app: Flask, client: FlaskClient, patient: int
) -> None:
    pages = records_pages(app, client)
    assert len(pages) > len(SECTIONS)
    for path in pages:
        page = client.get(path)
        assert page.status_code == 200, path
        text = main(page.text)
        assert CHICAGO_DAY in text, path
        assert UTC_DAY not in text, path
        assert "UTC" not in page.text, path
    choose(client, "us", "UTC")  # the prepared pages are keyed by the zone: shown at once
    for path in pages:
        text = main(client.get(path).text)
        assert UTC_DAY in text and CHICAGO_DAY not in text, path


def test_htmx_fragments_show_the_patients_day_too(
    app: Flask, client: FlaskClient, patient: int
) -> None:
    for path in records_pages(app, client):
        fragment = client.get(path, headers={"HX-Request": "true"}).text
        assert UTC_DAY not in fragment, path


UNIT_PAGES = {
    "/records/": ("lb", "in"),
    "/records/vitals": ("lb", "in", "°F"),
    "/records/vitals/weight": ("lb",),
    "/records/vitals/height": ("in",),
    "/records/vitals/temperature": ("°F",),
    "/records/labs/test/2339-0": ("mg/dL",),
}
METRIC_WORDS = {"lb": "kg", "in": "cm", "°F": "°C", "mg/dL": "mmol/L"}


def test_weight_height_temperature_and_glucose_in_the_chosen_units(
    client: FlaskClient, patient: int
) -> None:
    vitals = main(client.get("/records/vitals").text)
    assert "176 lb" in vitals and "70.9 in" in vitals and "98.6 °F" in vitals
    glucose = main(client.get("/records/labs/test/2339-0").text)
    assert "90 mg/dL" in glucose
    for path, words in UNIT_PAGES.items():
        text = main(client.get(path).text)
        for word in words:
            assert re.search(rf"\d {re.escape(word)}\b", text), (path, word)
    choose(client, "metric", "America/Chicago")
    vitals = main(client.get("/records/vitals").text)
    assert "80 kg" in vitals and "180 cm" in vitals and "37 °C" in vitals
    assert not re.search(r"\d (lb|in|°F)\b", vitals)
    glucose = main(client.get("/records/labs/test/2339-0").text)
    assert "5 mmol/L" in glucose and "90 mg/dL as reported" in glucose
    for path, words in UNIT_PAGES.items():
        text = main(client.get(path).text)
        for word in words:
            assert re.search(rf"\d {re.escape(METRIC_WORDS[word])}", text), (path, word)


def test_charts_are_drawn_in_the_chosen_units(client: FlaskClient, patient: int) -> None:
    us = client.get("/records/vitals/weight").text
    assert re.search(r"<desc[^>]*>[^<]*Latest 176 lb on 4 Mar 2026", us)
    choose(client, "metric", "UTC")
    metric = client.get("/records/vitals/weight").text
    assert re.search(r"<desc[^>]*>[^<]*Latest 80 kg on 5 Mar 2026", metric)


# ---- the patient's own entries ------------------------------------------------------------


def add_weight_in_lb(client: FlaskClient) -> int:
    """180 lb entered at 22:30 on 4 March in Chicago (the browser's offset: 360 minutes)."""
    answer = client.post(
        "/entries/new/weight",
        data={"value": "180", "unit": "[lb_av]", "when": "2026-03-04T22:30", "tz": "360"},
    )
    assert answer.status_code == 302, answer.text
    own = sa.select(EhrConnection.id).where(EhrConnection.kind == "self")
    entry = db.session.scalar(
        sa.select(FhirRecord.id).where(
            FhirRecord.connection_id.in_(own), FhirRecord.code == "29463-7"
        )
    )
    assert entry is not None
    return entry


def test_an_entry_in_lb_is_shown_back_in_lb_on_the_patients_day(
    app: Flask, client: FlaskClient, patient: int
) -> None:
    with app.app_context():
        entry = add_weight_in_lb(client)
    page = main(client.get(f"/entries/{entry}").text)
    assert "180 lb" in page and f"on {CHICAGO_DAY} at 22:30" in page
    # US units: nothing to add (a word, not two letters of the page's random CSRF token)
    assert not re.search(r"\bkg\b", page)
    form = client.get(f"/entries/{entry}/edit").text
    assert 'value="180"' in form and re.search(r'<option selected value="\[lb_av\]">', form)
    # The clinic's weight at the same moment: one date for both, in every list.
    history = main(client.get("/records/vitals/weight").text)
    assert "180 lb" in history and history.count(CHICAGO_DAY) >= 2 and UTC_DAY not in history
    choose(client, "metric", "UTC")
    page = main(client.get(f"/entries/{entry}").text)
    assert "180 lb (81.6 kg)" in page and f"on {UTC_DAY} at 04:30" in page
    history = main(client.get("/records/vitals/weight").text)
    assert "81.6 kg" in history and "180 lb as recorded" in history
    assert CHICAGO_DAY not in history


def test_a_new_entry_starts_in_the_chosen_unit_and_the_patients_time(
    client: FlaskClient, patient: int
) -> None:
    form = client.get("/entries/new/weight").text
    assert re.search(r'<option selected value="\[lb_av\]">lb</option>', form)
    offset = datetime.now(ZoneInfo("America/Chicago")).utcoffset()
    assert offset is not None
    minutes = -int(offset.total_seconds() // 60)
    assert re.search(rf'name="tz"[^>]*value="{minutes}"|value="{minutes}"[^>]*name="tz"', form)
    temperature = client.get("/entries/new/temperature").text
    assert re.search(r'<option selected value="\[degF\]">°F</option>', temperature)
    choose(client, "metric", "Asia/Tokyo")
    form = client.get("/entries/new/weight").text
    assert re.search(r'<option selected value="kg">kg</option>', form)
    assert re.search(r'name="tz"[^>]*value="-540"|value="-540"[^>]*name="tz"', form)


# ---- the account page and sign-in ---------------------------------------------------------


def account_of(app: Flask, account_id: int) -> Account:
    with app.app_context():
        account = db.session.get(Account, account_id)
        assert account is not None
        db.session.expunge(account)
        return account


def test_the_account_page_changes_units_and_zone(
    app: Flask, client: FlaskClient, patient: int
) -> None:
    page = client.get("/account").text
    assert "Units and time zone" in page
    assert re.search(r'<input checked id="units-1" name="units" type="radio" value="us">', page)
    assert '<option selected value="America/Chicago">America/Chicago</option>' in page
    choose(client, "metric", "Europe/Paris")
    account = account_of(app, patient)
    assert (account.units, account.time_zone, account.time_zone_chosen) == (
        UnitSystem.METRIC,
        "Europe/Paris",
        True,
    )
    page = client.get("/account").text
    assert '<option selected value="Europe/Paris">Europe/Paris</option>' in page


@pytest.mark.parametrize(
    "data", [{"units": "imperial", "zone": "UTC"}, {"units": "us", "zone": "Mars/Olympus"}]
)
def test_the_account_page_refuses_what_it_does_not_offer(
    app: Flask, client: FlaskClient, patient: int, data: dict[str, str]
) -> None:
    answer = client.post("/account/shown", data=data)
    assert answer.status_code == 400 and "Please check the highlighted fields." in answer.text
    account = account_of(app, patient)
    assert (account.units, account.time_zone) == (UnitSystem.US, "America/Chicago")


def sign_in_from(app: Flask, zone: str | None) -> None:
    client = app.test_client()
    data = {"email": "dana@example.org", "password": PASSWORD}
    if zone is not None:
        data["zone"] = zone
    answer = client.post("/signin", data=data)
    assert answer.status_code == 302, answer.text


def test_the_browsers_zone_is_taken_at_sign_in(
    app: Flask, client: FlaskClient, patient: int
) -> None:
    signin = app.test_client().get("/signin").text
    assert re.search(r'<input data-browser-zone[^>]*name="zone" type="hidden"', signin)
    sign_in_from(app, "Asia/Tokyo")
    assert account_of(app, patient).time_zone == "Asia/Tokyo"
    for ignored in ("Mars/Olympus", "", None):  # unknown or missing: ignored, no error
        sign_in_from(app, ignored)
        assert account_of(app, patient).time_zone == "Asia/Tokyo"
    choose(client, "us", "America/Denver")  # chosen on the account page: it stays
    sign_in_from(app, "Europe/Paris")
    assert account_of(app, patient).time_zone == "America/Denver"


def test_portal_js_fills_the_zone_from_the_browser() -> None:
    script = (f.REPO / "static" / "portal.js").read_text()
    assert "Intl.DateTimeFormat().resolvedOptions().timeZone" in script
    assert "input[data-browser-zone]" in script


def test_a_visit_the_summary_and_the_results_list_use_the_chosen_units(
    app: Flask, client: FlaskClient
) -> None:
    visit = {
        "resourceType": "Encounter",
        "id": uuid.uuid4().hex,
        "status": "finished",
        "class": {"code": "AMB"},
        "type": [{"text": "Check-up"}],
        "subject": {"reference": "Patient/x"},
        "period": {"start": MOMENT, "end": MOMENT},
    }
    at_visit = {"encounter": {"reference": f"Encounter/{visit['id']}"}}
    weight = observation(
        "29463-7", "Body weight", "vital-signs", valueQuantity=quantity(80, "kg"), **at_visit
    )
    glucose = observation(
        "2339-0",
        "Glucose [Mass/volume] in Blood",
        "laboratory",
        valueQuantity=quantity(90, "mg/dL"),
        **at_visit,
    )
    with app.app_context():
        account = f.make_account(db.session, "Lee")
        account.units = UnitSystem.METRIC
        f.add_resources(
            db.session, f.make_connection(db.session, account), [visit, weight, glucose]
        )
        db.session.commit()
        account_id = account.id
    with client.session_transaction() as s:
        begin(s, account_id)
    pages = ("/records/visits", "/records/", "/records/labs")
    metric = {path: main(client.get(path).text) for path in pages}
    assert "80 kg" in metric["/records/visits"] and "5 mmol/L" in metric["/records/visits"]
    assert "5 mmol/L" in metric["/records/"] and "5 mmol/L" in metric["/records/labs"]
    choose(client, "us", "UTC")
    us = {path: main(client.get(path).text) for path in pages}
    assert "176 lb" in us["/records/visits"] and "90 mg/dL" in us["/records/visits"]
    assert "mmol/L" not in us["/records/"] and "90 mg/dL" in us["/records/"]
    assert "mmol/L" not in us["/records/labs"] and "90 mg/dL" in us["/records/labs"]


def test_usual_ranges_and_flags_follow_the_chosen_units(app: Flask, client: FlaskClient) -> None:
    glucose = observation(
        "2339-0",
        "Glucose [Mass/volume] in Blood",
        "laboratory",
        valueQuantity=quantity(120, "mg/dL"),
        referenceRange=[{"low": quantity(70, "mg/dL"), "high": quantity(99, "mg/dL")}],
    )
    fever = observation(
        "8310-5", "Body temperature", "vital-signs", valueQuantity=quantity(38.5, "Cel")
    )
    with app.app_context():
        account = f.make_account(db.session, "Kim")
        account.units = UnitSystem.METRIC
        f.add_resources(db.session, f.make_connection(db.session, account), [glucose, fever])
        db.session.commit()
        account_id = account.id
    with client.session_transaction() as s:
        begin(s, account_id)
    lab = main(client.get("/records/labs/test/2339-0").text)
    assert "6.66 mmol/L" in lab and "3.89\u20135.5 mmol/L" in lab and "High" in lab
    temperature = main(client.get("/records/vitals/temperature").text)
    assert "38.5 °C" in temperature and "36.1\u201337.9 °C" in temperature
    assert "High" in temperature
    choose(client, "us", "UTC")
    lab = main(client.get("/records/labs/test/2339-0").text)
    assert "120 mg/dL" in lab and "70\u201399 mg/dL" in lab and "High" in lab
    assert "mmol/L" not in lab
    temperature = main(client.get("/records/vitals/temperature").text)
    assert "101 °F" in temperature and "97\u2013100 °F" in temperature and "High" in temperature
    assert "°C" not in temperature.replace("°C as recorded", "")
