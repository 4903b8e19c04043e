"""A long list of medicines or problems is paged: a page renders at most PAGE_SIZE of them,
its links keep the filter, and every one is on some page once."""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import Account
from portal.phr.lists import PAGE_SIZE
from tests.phr import factories as f

COUNT = PAGE_SIZE + 10


def medicine(n: int) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": uuid.uuid4().hex[:12],
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": f"9{n}"}],
            "text": f"Medicine number {n:02d}",
        },
        "subject": {"reference": "Patient/p"},
        "authoredOn": f"2020-{1 + n // 28:02d}-{1 + n % 28:02d}",
    }


def problem(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": uuid.uuid4().hex[:12],
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "category": [{"coding": [{"code": "problem-list-item"}]}],
        "code": {
            "coding": [{"system": "http://snomed.info/sct", "code": f"7{n}"}],
            "text": f"Problem number {n:02d}",
        },
        "subject": {"reference": "Patient/p"},
        "onsetDateTime": f"2020-{1 + n // 28:02d}-{1 + n % 28:02d}",
    }


def names(html: str, kind: str) -> list[str]:
    """The items' names in order (a medicine's coded name under "Details" repeats it)."""
    return list(dict.fromkeys(re.findall(rf"{kind} number \d\d", html)))


def test_long_medication_and_problem_lists_are_paged_with_the_filter_kept(
    app: Flask, client: FlaskClient, me: int
) -> None:
    with app.app_context():
        account = db.session.get(Account, me)
        assert account is not None
        clinic = f.make_connection(db.session, account)
        resources = [medicine(n) for n in range(COUNT)] + [problem(n) for n in range(COUNT)]
        f.add_resources(db.session, clinic, resources)
        db.session.commit()
    for path, kind in (("/records/medications", "Medicine"), ("/records/problems", "Problem")):
        show = "all"
        first = client.get(f"{path}?show={show}").text
        assert len(names(first, kind)) == PAGE_SIZE
        assert f'href="{path}?page=2&amp;show={show}"' in first and "Page 1 of 2" in first
        second = client.get(f"{path}?page=2&show={show}").text
        assert "Page 2 of 2" in second
        shown = names(first, kind) + names(second, kind)
        assert sorted(shown) == sorted(f"{kind} number {n:02d}" for n in range(COUNT))
        assert shown[0] == f"{kind} number {COUNT - 1:02d}"  # newest first
        assert len(names(client.get(path).text, kind)) == PAGE_SIZE  # current/active: all are
