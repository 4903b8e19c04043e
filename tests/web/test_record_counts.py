"""Every count a records page prints counts folded facts: it equals the rows shown, and Brant
Jacobson at Riverside and Lakeside sees what he sees at Riverside alone, each row once."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from tests.phr import factories as f
from tests.phr.two_clinics import LAKESIDE, RIVERSIDE, brant_at_both
from tests.sessions import begin

HTMX = {"HX-Request": "true"}


def extras(patient: str) -> list[dict[str, Any]]:
    """What Synthea v2.4 does not give Brant, so that every page has rows: a report sent as a
    document, an imaging study, a goal, a care team, a measurement with no chart of its own."""
    subject = {"reference": f"Patient/{patient}"}
    return [
        {
            "resourceType": "DiagnosticReport",
            "id": uuid.uuid4().hex,
            "status": "final",
            "subject": subject,
            "code": {
                "coding": [{"system": "http://loinc.org", "code": "24627-2"}],
                "text": "Chest X-ray",
            },
            "effectiveDateTime": "2020-05-17T09:00:00Z",
            "presentedForm": [
                {"contentType": "text/plain", "data": "Tm8gZmluZGluZ3M=", "title": "Report"}
            ],
        },
        {
            "resourceType": "ImagingStudy",
            "id": uuid.uuid4().hex,
            "status": "available",
            "subject": subject,
            "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.840.99.1"}],
            "started": "2020-05-17T09:00:00Z",
            "description": "Chest X-ray",
        },
        {
            "resourceType": "Goal",
            "id": uuid.uuid4().hex,
            "lifecycleStatus": "active",
            "subject": subject,
            "description": {"text": "Use the inhaler before exercise"},
            "startDate": "2019-01-01",
        },
        {
            "resourceType": "CareTeam",
            "id": uuid.uuid4().hex,
            "status": "active",
            "subject": subject,
            "name": "Asthma care team",
            "period": {"start": "2019-01-01"},
        },
        {
            "resourceType": "Observation",
            "id": uuid.uuid4().hex,
            "status": "final",
            "subject": subject,
            "category": [{"coding": [{"code": "vital-signs"}]}],
            "code": {
                "coding": [{"system": "http://loinc.org", "code": "8478-0"}],
                "text": "Mean blood pressure",
            },
            "effectiveDateTime": "2020-05-17T09:00:00Z",
            "valueQuantity": {"value": 90, "unit": "mm[Hg]", "code": "mm[Hg]"},
        },
    ]


def account_with(app: Flask, both: bool) -> int:
    with app.app_context():
        s = db.session
        if both:
            brant = brant_at_both(s)
            f.add_resources(s, brant.river, extras(brant.river.patient_id))
            f.add_resources(s, brant.lake, extras(brant.lake.patient_id))
            account_id = brant.account.id
        else:
            account, river, _ = f.patient_with(s, "brant_jacobson", name="Brant Jacobson")
            f.add_resources(s, river, extras(river.patient_id))
            account_id = account.id
        s.commit()
        return account_id


@pytest.fixture
def pages(app: Flask, client: FlaskClient) -> Callable[[bool], FlaskClient]:
    ids = {both: account_with(app, both) for both in (False, True)}

    def signed_in(both: bool) -> FlaskClient:
        with client.session_transaction() as s:
            s.clear()
            begin(s, ids[both])
        return client

    return signed_in


def number(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found, pattern
    return int(found.group(1).replace(",", ""))


def walk(client: FlaskClient, path: str, row: str) -> tuple[int | None, list[str]]:
    """(the count a paged list prints, if it prints one; every row of every page)."""
    first = client.get(path).text
    pages = int(m.group(1)) if (m := re.search(r"Page 1 of (\d+)", first)) else 1
    rows: list[str] = []
    for n in range(1, pages + 1):
        rows += re.findall(row, client.get(f"{path}?page={n}", headers=HTMX).text, re.S)
    printed = re.search(r"<p class=\"muted\">(\d[\d,]*) \w+", first)
    return (int(printed.group(1).replace(",", "")) if printed else None), rows


PAGED = {
    "/records/visits": r'<li class="visit card".*?</li>\s*(?=<li class="visit|</ol>)',
    "/records/procedures": r'<li class="item">.*?</li>',
    "/records/immunizations": r"<tr>\s*<th scope=\"row\">.*?</tr>",
    "/records/documents": r'<li class="item document">.*?(?=<li class="item document"|</ul>)',
    "/records/imaging": r'<li class="item">.*?</li>',
    "/records/bills": r"<tr>\s*<th scope=\"row\">.*?</tr>",
}


@pytest.mark.parametrize("path", PAGED)
def test_a_paged_lists_count_is_its_rows_and_two_clinics_add_none(
    pages: Callable[[bool], FlaskClient], path: str
) -> None:
    alone_count, alone = walk(pages(False), path, PAGED[path])
    count, rows = walk(pages(True), path, PAGED[path])
    assert alone and count in (None, len(rows)) and alone_count in (None, len(alone))
    assert len(rows) == len(alone)  # each fact once
    assert all(RIVERSIDE in r for r in rows if "<li" in r or "<tr" in r)


def test_brant_sees_37_visits_each_also_reported_by_lakeside(
    pages: Callable[[bool], FlaskClient],
) -> None:
    count, rows = walk(pages(True), "/records/visits", PAGED["/records/visits"])
    assert count == len(rows) == 37
    assert all(f"Also reported by {LAKESIDE}." in r for r in rows)
    count, rows = walk(pages(True), "/records/procedures", PAGED["/records/procedures"])
    assert count == len(rows) == 12


def lab_counts(client: FlaskClient) -> tuple[int, int, dict[str, tuple[int, int]]]:
    """(results printed, tests printed, each test: (its count on the overview, rows on its own
    page, as "Show all" opens it))."""
    first = client.get("/records/labs").text
    total, tests = (
        number(r"(\d[\d,]*) results? from", first),
        number(r"results? from (\d+) tests?", first),
    )
    pages = int(m.group(1)) if (m := re.search(r"Page 1 of (\d+)", first)) else 1
    each: dict[str, tuple[int, int]] = {}
    for n in range(1, pages + 1):
        page = client.get(f"/records/labs?page={n}", headers=HTMX).text
        for key, shown in re.findall(
            r'href="/records/labs/test/([^"]+)".*?<p class="item-meta">(\d+) results?', page, re.S
        ):
            history = client.get(f"/records/labs/test/{key}", headers=HTMX).text
            rows = len(re.findall(r'<tr class="result', history))
            assert number(r"<p class=\"muted\">(\d+) results?", history) == rows
            each[key] = (int(shown), rows)
    return total, tests, each


def test_lab_counts_are_the_results_shown(pages: Callable[[bool], FlaskClient]) -> None:
    alone = lab_counts(pages(False))
    total, tests, each = lab_counts(pages(True))
    assert (total, tests, each) == alone
    assert tests == len(each) and total == sum(rows for _, rows in each.values())
    assert all(shown == rows for shown, rows in each.values())
    overview = pages(True).get("/records/labs").text
    for found in re.findall(r"Show all (\d+) results", overview):
        assert int(found) in {rows for _, rows in each.values()}


def vital_counts(client: FlaskClient) -> dict[str, tuple[int, int]]:
    """Each vital sign: (the count its card prints, the rows of its own page)."""
    page = client.get("/records/vitals").text
    out = {}
    for key in dict.fromkeys(re.findall(r'href="/records/vitals/([a-z-]+)"', page)):
        start = page.index(f'<article class="card vital" id="vital-{key}"')
        card = page[start : page.index("</article>", start)]
        shown = re.findall(r"Show all (\d+) readings|the latest \d+ of (\d+) readings", card)
        history = client.get(f"/records/vitals/{key}", headers=HTMX).text
        rows = len(re.findall(r'<tr class="reading', history))
        printed = {int(a or b) for a, b in shown} or {rows}
        assert len(printed) == 1
        out[key] = (printed.pop(), rows)
    return out


def test_vital_counts_are_the_readings_shown(pages: Callable[[bool], FlaskClient]) -> None:
    alone = vital_counts(pages(False))
    both = vital_counts(pages(True))
    assert both == alone and both
    assert all(printed == rows for printed, rows in both.values())
    others = re.findall(
        r'<td data-label="Readings">(\d+)</td>', pages(True).get("/records/vitals").text
    )
    assert others == ["1"]  # the mean blood pressure both clinics sent: one reading


def items(text: str, marker: str) -> list[str]:
    """Each item of a list: from its marker to the next item (the last to its section's end)."""
    main = text[text.index("<main") : text.index("</main>")]
    parts = re.split(marker, main)[1:]
    return [p.split("</section>")[0] for p in parts]


UNPAGED = {
    "/records/problems?show=all": r'<li class="item[ "]',
    "/records/medications?show=all": r'<li class="item[ "]',
    "/records/allergies": r'<li class="item[ "]',
    "/records/care-plans?show=all": r'<li class="item[ "]',
    "/records/care-team": r'<li><strong>|<li class="item">',
    "/records/social-history": r'<article class="card topic"',
    "/records/questionnaires": r'<article class="card topic"',
}


@pytest.mark.parametrize("path", UNPAGED)
def test_an_unpaged_list_shows_each_fact_once(
    pages: Callable[[bool], FlaskClient], path: str
) -> None:
    alone = items(pages(False).get(path).text, UNPAGED[path])
    both = items(pages(True).get(path).text, UNPAGED[path])
    assert len(both) == len(alone)
    if "topic" not in UNPAGED[path]:  # (answers are folded by portal.phr.answers)
        assert all(LAKESIDE in i for i in both)


def test_coverage_counts_the_bills_the_bills_page_shows(
    pages: Callable[[bool], FlaskClient],
) -> None:
    for both in (False, True):
        client = pages(both)
        count, rows = walk(client, "/records/bills", PAGED["/records/bills"])
        assert count == len(rows)
        coverage = client.get("/records/coverage").text
        assert number(r"On (\d+) bills?", coverage) == len(rows)


def test_the_summary_counts_what_the_pages_show(pages: Callable[[bool], FlaskClient]) -> None:
    client = pages(True)
    text = client.get("/records/").text
    shots, rows = walk(client, "/records/immunizations", PAGED["/records/immunizations"])
    assert shots == len(rows) and f"All {shots} immunizations" in text
    labs = text[text.index('id="h-labs"') : text.index("All lab results")]
    name = r'<a class="result-name"[^>]*>(.*?)</a>\s*'
    value = r'<span class="result-value"><strong[^>]*>(.*?)</strong>.*?'
    day = r'<span class="muted">(\d+ \w+ \d{4})'
    results = re.findall(name + value + day, labs, re.S)
    assert len(results) == len(set(results)) == 8
    assert (
        results.count(("Estimated Glomerular Filtration Rate", "118 mL/min/1.73 m²", "17 May 2020"))
        == 1
    )
    assert labs.count(f"also {LAKESIDE}") == 8
