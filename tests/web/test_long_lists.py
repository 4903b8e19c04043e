"""Long lists are paged: a page renders a bounded number of items, its links keep the filter,
and every item is on some page once."""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import Account
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
