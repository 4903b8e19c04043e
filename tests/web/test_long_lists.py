"""Long lists are paged: a page renders a bounded number of items, its links keep the filter,
and every item is on some page once."""

from __future__ import annotations

import re
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import Account
from portal.phr import labs
from tests.phr import factories as f


def care_plan(n: int, status: str) -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "id": uuid.uuid4().hex[:12],
        "status": status,
        "intent": "plan",
        "title": f"Plan number {n:02d}",
        "subject": {"reference": "Patient/p"},
        "period": {"start": f"2020-01-{n:02d}"},
    }


def titles(html: str) -> list[str]:
    return re.findall(r"Plan number \d\d", html)


def test_care_plans_are_paged_active_first_with_the_filter_kept(
    app: Flask, client: FlaskClient, me: int
) -> None:
    with app.app_context():
        account = db.session.get(Account, me)
        assert account is not None
        clinic = f.make_connection(db.session, account)
        plans = [care_plan(n, "active" if n % 3 else "completed") for n in range(1, 31)]
        f.add_resources(db.session, clinic, plans)
        db.session.commit()
    first = client.get("/records/care-plans?show=all").text
    assert len(titles(first)) == 25
    assert 'href="/records/care-plans?page=2&amp;show=all"' in first and "Page 1 of 2" in first
    second = client.get("/records/care-plans?page=2&show=all").text
    shown = titles(first) + titles(second)
    assert sorted(shown) == sorted(f"Plan number {n:02d}" for n in range(1, 31))
    active = [t for t in shown if int(t[-2:]) % 3]
    assert shown[: len(active)] == active  # the active ones first, newest first
    assert active[0] == "Plan number 29"
    only_active = client.get("/records/care-plans?show=active").text
    assert len(titles(only_active)) == 20 and "Page 1 of 2" not in only_active


def glucose(n: int) -> dict[str, Any]:
    day = date(2020, 1, 1) + timedelta(days=n)
    return {
        "resourceType": "Observation",
        "id": uuid.uuid4().hex[:12],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}], "text": "Glucose"},
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": f"{day.isoformat()}T09:00:00Z",
        "valueQuantity": {
            "value": 80 + n % 40,
            "unit": "mg/dL",
            "system": "http://unitsofmeasure.org",
            "code": "mg/dL",
        },
    }


def result_dates(html: str) -> list[str]:
    return re.findall(r'<tr class="result[^"]*">\s*<td data-label="Date">([^<]+)</td>', html)


def test_a_tests_results_are_paged_newest_first_under_a_bounded_chart(
    app: Flask, client: FlaskClient, me: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(labs, "HISTORY_CHARTED", 60)
    with app.app_context():
        account = db.session.get(Account, me)
        assert account is not None
        f.add_resources(
            db.session, f.make_connection(db.session, account), map(glucose, range(120))
        )
        db.session.commit()
    first = client.get("/records/labs/test/2339-0").text
    assert len(result_dates(first)) == 50 and result_dates(first)[0] == "29 Apr 2020"
    assert "Results 1 to 50 of 120" in first and "Page 1 of 3" in first
    assert 'href="/records/labs/test/2339-0?page=2"' in first
    assert "The chart shows the latest 60 of 120 results." in first
    assert first.count("<circle") <= 60 and "60 results from" in first  # the chart's own words
    last = client.get("/records/labs/test/2339-0?page=3").text
    assert len(result_dates(last)) == 20 and result_dates(last)[-1] == "1 Jan 2020"
    assert "Results 101 to 120 of 120" in last
    every = {
        d
        for n in (1, 2, 3)
        for d in result_dates(client.get(f"/records/labs/test/2339-0?page={n}").text)
    }
    assert len(every) == 120
    overview = client.get("/records/labs").text
    assert "120 results" in overview


VITAL_SIGNS = {
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "vital-signs",
}


def vital(n: int, code: str, value: float, unit: str) -> dict[str, Any]:
    day = date(2021, 1, 1) + timedelta(days=n)
    return {
        "resourceType": "Observation",
        "id": uuid.uuid4().hex[:12],
        "status": "final",
        "category": [{"coding": [VITAL_SIGNS]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": f"{day.isoformat()}T09:00:00Z",
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def reading_rows(html: str) -> list[tuple[str, str, str]]:
    """(date, reading, source cell) of each reading row."""
    return re.findall(
        r'<tr class="reading[^"]*"><td data-label="Date">([^<]+)</td>'
        r'<td data-label="Reading"><span class="[^"]*">([^<]+)</span>.*?'
        r'<td data-label="Source">(.*?)</td></tr>',
        html,
    )


def test_a_vital_signs_readings_are_paged_each_once_under_a_bounded_chart(
    app: Flask, client: FlaskClient, me: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portal.phr import vitals

    monkeypatch.setattr(vitals, "HISTORY_CHARTED", 60)
    weights = [vital(n, "29463-7", 70 + n % 10, "kg") for n in range(120)]
    # Blood pressure taken as two readings at once (top and bottom): one reading, never
    # split between pages.
    pressure = [
        reading
        for n in range(70)
        for reading in (vital(n, "8480-6", 120 + n % 9, "mm[Hg]"), vital(n, "8462-4", 80, "mm[Hg]"))
    ]
    with app.app_context():
        account = db.session.get(Account, me)
        assert account is not None
        river = f.make_connection(db.session, account)
        lake = f.make_connection(db.session, account, "Lakeside Family Clinic")
        f.add_resources(db.session, river, [*weights, *pressure])
        # Lakeside sent the same weights: each reading is listed (and counted) once.
        f.add_resources(db.session, lake, [{**w, "id": f"l{w['id']}"} for w in weights])
        db.session.commit()
    first = client.get("/records/vitals/weight").text
    rows = reading_rows(first)
    assert len(rows) == 50 and rows[0][0] == "30 Apr 2021"
    assert all("also Lakeside Family Clinic" in source for _, _, source in rows)
    assert "Readings 1 to 50 of 120" in first and "Page 1 of 3" in first
    assert 'href="/records/vitals/weight?page=2"' in first
    assert "The chart shows the latest 60 of 120 readings." in first
    assert 'Latest:</span> <span class="latest-value">79 kg' in first
    last = client.get("/records/vitals/weight?page=3").text
    assert len(reading_rows(last)) == 20 and reading_rows(last)[-1][0] == "1 Jan 2021"
    assert 'Latest:</span> <span class="latest-value">79 kg' in last  # the newest of all
    every = [
        row[0]
        for n in (1, 2, 3)
        for row in reading_rows(client.get(f"/records/vitals/weight?page={n}").text)
    ]
    assert len(every) == len(set(every)) == 120
    pages = [client.get(f"/records/vitals/blood-pressure?page={n}").text for n in (1, 2)]
    listed = [text for page in pages for _, text, _ in reading_rows(page)]
    assert len(listed) == 70 and all(re.fullmatch(r"12\d/80 mmHg", t) for t in listed)
    overview = client.get("/records/vitals").text
    assert "Show all 120 readings" in overview and "Show all 70 readings" in overview
    assert "The chart shows the latest 30 of 120 readings." in overview
    summary = client.get("/records/").text
    assert "79 kg" in summary and "126/80 mmHg" in summary
