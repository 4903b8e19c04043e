"""Usual ranges on the pages: flags in words, the shaded band, "About this test", no range said.

Synthea sends no reference ranges and no interpretations: every range and flag on these
pages comes from the built-in table (portal.phr.ranges), unless a test adds the clinic's own.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape

from portal.extensions import db
from portal.models import EhrConnection, UnitSystem
from portal.phr import about_tests, ranges
from portal.phr.classify import classify
from portal.phr.vitals import BP_NO_CATEGORY
from tests.phr import factories as f
from tests.sessions import begin

EGFR, BMI = "33914-3", "39156-5"
HTMX = {"HX-Request": "true"}


def signed_in(app: Flask, client: FlaskClient, bundle: str) -> tuple[int, list[dict[str, Any]]]:
    """The patient of `bundle` at one clinic, signed in: (their connection's id, resources)."""
    with app.app_context():
        account, connection, resources = f.patient_with(db.session, bundle)
        db.session.commit()
        account_id, connection_id = account.id, connection.id
    with client.session_transaction() as s:
        begin(s, account_id)
    return connection_id, resources


@pytest.fixture
def vito(app: Flask, client: FlaskClient) -> list[dict[str, Any]]:
    return signed_in(app, client, "vito_feeney")[1]


def code_of(resource: dict[str, Any]) -> str | None:
    return (resource.get("code") or {}).get("coding", [{}])[0].get("code")


def of_code(resources: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["resourceType"] == "Observation" and code_of(r) == code]


def section(text: str, heading_id: str) -> str:
    start = text.index(f'aria-labelledby="{heading_id}"')
    return text[start : text.index("</section>", start)]


def card(text: str, element_id: str) -> str:
    start = text.index(f'id="{element_id}"')
    return text[start : text.index("</article>", start)]


def rows(html: str) -> list[str]:
    return re.findall(r'<tr class="(?:result|reading)[^"]*".*?</tr>', html, flags=re.S)


# ---- lab results ------------------------------------------------------------------------------


def test_lab_test_page_flags_in_words_band_about_and_no_range(
    client: FlaskClient, vito: list[dict[str, Any]]
) -> None:
    text = client.get(f"/records/labs/test/{EGFR}").text
    results = of_code(vito, EGFR)
    per_area = [r for r in results if r["valueQuantity"]["code"] == "mL/min/{1.73_m2}"]
    plain = [r for r in results if r["valueQuantity"]["code"] == "mL/min"]
    assert per_area and plain
    low = [r for r in per_area if Decimal(repr(r["valueQuantity"]["value"])) < 60]
    assert low  # Vito's kidneys: KDIGO's 60 is the table's lower bound
    # The usual range, whose it is, and what the test is.
    assert "Usual range: 60 or more mL/min/1.73 m²" in text
    assert "(a general range for adults; your clinic did not send one)" in text
    assert f"About this test:</span> {escape(about_tests.ABOUT[EGFR])}" in text
    # Every result is in the table; those below 60 flagged in words, not only by a symbol.
    table = rows(text)
    assert len(table) == len(results)
    flagged = [r for r in table if "flagged-row" in r]
    assert len(flagged) == len(low)
    assert all("Low</span>" in r and "Below the usual range" in r for r in flagged)
    # Results in mL/min (not per 1.73 m²): no range, said so, never a dash, never a flag.
    missing = [r for r in table if "No usual range is known for this test in mL/min" in r]
    assert len(missing) == len(plain)
    assert all("flagged-row" not in r for r in missing)
    assert "—" not in "".join(table)
    # The band is shaded in the chart of the results that have a range, not in the other.
    charts = text.split('<figure class="chart">')[1:]
    assert len(charts) == 2
    assert '<rect class="band"' in charts[0] and "Usual range</span>" in charts[0]
    assert '<rect class="band"' not in charts[1]
    assert "Outside the usual range" in charts[0]
    assert re.search(r"<desc [^>]*>[^<]*Usual range 60 or more", charts[0])


def test_the_clinics_own_range_wins_on_the_page(app: Flask, client: FlaskClient) -> None:
    connection_id, vito = signed_in(app, client, "vito_feeney")
    latest = max(of_code(vito, "2339-0"), key=lambda r: r["effectiveDateTime"])
    theirs = f.variant(
        f.with_range(latest, 60, 80),
        effectiveDateTime="1979-12-01T09:00:00Z",
        valueQuantity={**latest["valueQuantity"], "value": 85},  # inside the table's 70-99
    )
    with app.app_context():
        connection = db.session.get(EhrConnection, connection_id)
        assert connection is not None
        f.add_resources(db.session, connection, [theirs])
        connection.account.units = UnitSystem.US  # reads glucose in mg/dL, as the clinic sent
        db.session.commit()
    text = client.get("/records/labs/test/2339-0").text
    start = text.index('<p class="latest">')
    latest_line = text[start : text.index('<section class="card">', start)]
    assert "85 mg/dL" in latest_line and "High</span>" in latest_line
    assert "Above the usual range" in latest_line
    assert "Usual range: 60\u201380 mg/dL</span></p>" in latest_line  # no "general range"
    newest = rows(text)[0]
    assert "60\u201380 mg/dL</td>" in newest and "flagged-row" in newest


def test_labs_page_cards(client: FlaskClient, vito: list[dict[str, Any]]) -> None:
    first = client.get("/records/labs").text
    pages = int(re.search(r"Page 1 of (\d+)", first).group(1))  # type: ignore[union-attr]
    cards: dict[str, str] = {}
    for n in range(1, pages + 1):
        text = client.get(f"/records/labs?page={n}").text
        for key in re.findall(r'<article class="card lab-test" id="test-([^"]+)"', text):
            html = card(text, f"test-{key}")
            code = re.search(r'href="/records/labs/test/([^"]+)"', html).group(1)  # type: ignore[union-attr]
            cards[code] = html
    assert EGFR in cards and len(cards) > 6
    for code, html in cards.items():
        if code in about_tests.ABOUT:
            assert f"About this test:</span> {escape(about_tests.ABOUT[code])}" in html
        else:
            assert "About this test:" not in html
        assert "Usual range: " in html or "No usual range is known for this test" in html
    egfr = cards[EGFR]
    assert '<rect class="band"' in egfr
    assert "Low</span>" in egfr and "Below the usual range" in egfr


def test_summary_recent_results_and_vitals(client: FlaskClient, vito: list[dict[str, Any]]) -> None:
    text = client.get("/records/").text
    labs = section(text, "h-labs")
    items = re.findall(r"<li.*?</li>", labs, flags=re.S)
    assert len(items) == 8
    for item in items:
        assert "· usual " in item or "No usual range is known for this test" in item
        assert 'class="about-test"' in item
    assert any("Low</span>" in i and "Below the usual range" in i for i in items)  # eGFR
    # The latest blood pressure in the AHA's words.
    panels = of_code(vito, "55284-4")
    newest = max(panels, key=lambda r: r["effectiveDateTime"])
    parts = {code_of(c): c["valueQuantity"]["value"] for c in newest["component"]}
    category = ranges.bp_category(ranges.decimal(parts["8480-6"]), ranges.decimal(parts["8462-4"]))
    assert category is not None
    vitals = section(text, "h-vitals")
    tile = next(t for t in re.findall(r"<li.*?</li>", vitals, flags=re.S) if "Blood pressure" in t)
    assert str(escape(category.words)) in tile


# ---- vital signs ------------------------------------------------------------------------------


def bp_categories(resources: list[dict[str, Any]]) -> list[ranges.Category]:
    found = []
    for panel in of_code(resources, "55284-4"):
        parts = {code_of(c): c.get("valueQuantity", {}).get("value") for c in panel["component"]}
        category = ranges.bp_category(
            ranges.decimal(parts.get("8480-6")), ranges.decimal(parts.get("8462-4"))
        )
        if category:
            found.append(category)
    return found


def test_vitals_page(client: FlaskClient, vito: list[dict[str, Any]]) -> None:
    text = client.get("/records/vitals").text
    bp = card(text, "vital-blood-pressure")
    assert (
        f"About this measurement:</span> {escape(about_tests.ABOUT_VITALS['blood-pressure'])}" in bp
    )
    words = {c.words for c in bp_categories(vito)}
    shown = [w for w in words if str(escape(w)) in bp]
    assert shown  # the latest readings' categories, in words
    bmi = card(text, "vital-bmi")
    assert '<rect class="band"' in bmi and "Usual range</span>" in bmi
    assert "Usual range: 18.5 to below 25 kg/m²" in bmi
    weight = card(text, "vital-weight")
    assert "Weight has no usual range on its own" in weight
    assert '<rect class="band"' not in weight


def test_vital_history_pages(client: FlaskClient, vito: list[dict[str, Any]]) -> None:
    text = client.get("/records/vitals/bmi").text
    readings = of_code(vito, BMI)
    outside = [
        r
        for r in readings
        if not (Decimal("18.5") <= Decimal(repr(r["valueQuantity"]["value"])) < 25)
    ]
    table = rows(text)
    assert len(table) == len(readings)
    flagged = [r for r in table if "flag flag-" in r]
    assert len(flagged) == len(outside)
    assert all("Above the usual range" in r or "Below the usual range" in r for r in flagged)
    assert '<rect class="band"' in text
    assert f"About this measurement:</span> {escape(about_tests.ABOUT_VITALS['bmi'])}" in text
    bp = client.get("/records/vitals/blood-pressure").text
    categories = bp_categories(vito)
    table = rows(bp)
    assert len(table) == len(of_code(vito, "55284-4"))
    for category in {c.key: c for c in categories}.values():
        expected = sum(1 for c in categories if c.key == category.key)
        assert sum(1 for r in table if f"{escape(category.words)}</span>" in r) == expected


def test_a_childs_ranges_by_age_at_the_test(app: Flask, client: FlaskClient) -> None:
    _, resources = signed_in(app, client, "Erminia_Ondricka")
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    born = date.fromisoformat(patient["birthDate"])
    hemoglobin = of_code(resources, "718-7")
    assert all(
        ranges.age_on(born, date.fromisoformat(r["effectiveDateTime"][:10])) < 18  # type: ignore[operator]
        for r in hemoglobin
    )
    text = client.get("/records/labs/test/718-7").text
    assert "Usual range: 11.5\u201315.5 g/dL" in text
    assert "a general range for children aged 1\u201317" in text
    high = [r for r in hemoglobin if r["valueQuantity"]["value"] > 15.5]
    assert sum(1 for r in rows(text) if "flagged-row" in r) == len(high)
    vitals = client.get("/records/vitals").text
    assert str(escape(BP_NO_CATEGORY)) in card(vitals, "vital-blood-pressure")
    assert all(classify(r).category != "labs" or r.get("referenceRange") is None for r in resources)


def test_a_visits_results_are_flagged_against_the_table_too(
    app: Flask, client: FlaskClient
) -> None:
    connection_id, _ = signed_in(app, client, "vito_feeney")
    visit = {
        "resourceType": "Encounter",
        "id": "newest-visit",
        "status": "finished",
        "class": {"code": "AMB"},
        "type": [{"text": "Check-up"}],
        "period": {"start": "2026-11-02T09:00:00Z", "end": "2026-11-02T09:30:00Z"},
    }

    def ldl(value: int) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "id": f"ldl-{value}",
            "status": "final",
            "category": [{"coding": [{"code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "18262-6"}], "text": "LDL"},
            "encounter": {"reference": "Encounter/newest-visit"},
            "effectiveDateTime": "2026-11-02T09:10:00Z",
            "valueQuantity": {"value": value, "unit": "mg/dL", "code": "mg/dL"},
        }

    with app.app_context():
        connection = db.session.get(EhrConnection, connection_id)
        assert connection is not None
        connection.account.units = UnitSystem.US
        # No range or interpretation from the clinic: the built-in table judges (below 100).
        f.add_resources(db.session, connection, [visit, ldl(190), ldl(80)])
        db.session.commit()
    text = client.get("/records/visits").text
    start = text.index("Check-up")
    card = text[start : text.index('<li class="visit card"', start)]
    assert '<li class="flagged-row">LDL: <strong>190 mg/dL (high)</strong>' in card
    assert "<li>LDL: <strong>80 mg/dL</strong>" in card
