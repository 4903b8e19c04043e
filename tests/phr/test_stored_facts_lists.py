"""Problems, medications and allergies folded once and stored (portal.phr.facts): a later page
or show-filter reads the stored facts and only the records of the facts it shows; a record
stored folds again."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.extensions import db
from portal.phr import lists, summary
from portal.phr.access import open_record
from portal.phr.records import Records
from tests.phr import factories as f
from tests.phr.test_facts import lists_of, refuse_folding
from tests.phr.two_clinics import TwoClinics, brant_at_both

PAGES: dict[str, tuple[Callable[[Records, str], list[Any]], tuple[str, ...], tuple[str, ...]]] = {
    "problems": (lists.problems, ("active", "past", "all"), ("problems", "diagnoses")),
    "medications": (lists.medications, ("current", "past", "all"), ("medications",)),
    "allergies": (lambda records, _show: lists.allergies(records), ("all",), ("allergies",)),
}


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with app.app_context():
        yield db.session


@pytest.fixture
def brant(session: Session) -> TwoClinics:
    return brant_at_both(session)


def records_of(session: Session, brant: TwoClinics) -> Records:
    return Records(session, open_record(session, brant.account.id))


@pytest.mark.parametrize("name", PAGES)
def test_a_list_is_folded_once_and_each_filter_reads_only_its_facts_records(
    session: Session, brant: TwoClinics, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    page, shows, categories = PAGES[name]
    before = {show: page(records_of(session, brant), show) for show in shows}
    assert before[shows[-1]], "the two clinics' record has some"
    assert any(item.also for item in before[shows[-1]])  # folded across the clinics
    # Folded once, stored as one list per filter (each counted and sliced by position).
    assert [len(lists_of(session, brant.account, f"{name}-{w}")) for w in lists.SHOWN] == [1] * 3

    refuse_folding(monkeypatch)
    read: list[int] = []
    real_rows = Records.rows

    def rows(self: Records, wanted: Any, **options: Any) -> Any:
        found = real_rows(self, wanted, **options)
        if set(wanted) & set(categories):
            read.append(len(found))
        return found

    monkeypatch.setattr(Records, "rows", rows)
    for show in shows:
        read.clear()
        again = page(records_of(session, brant), show)
        assert again == before[show]  # the same items, conflicts and also-reported-by
        assert sum(read) == sum(max(1, len(item.merged)) for item in again)


def test_the_summary_counts_the_rows_of_the_full_lists(session: Session, brant: TwoClinics) -> None:
    shown = summary.summary(records_of(session, brant), utcnow())
    records = records_of(session, brant)
    active, current = lists.problems(records, "active"), lists.medications(records, "current")
    assert shown.problem_count == len(active) and shown.problems == active[: summary.SHOWN]
    assert shown.medication_count == len(current) and shown.medications == current[: summary.SHOWN]
    assert shown.allergies == [a for a in lists.allergies(records) if a.active]


def test_a_medicine_stored_is_folded_again(session: Session, brant: TwoClinics) -> None:
    current = lists.medications(records_of(session, brant), "current")
    patient = next(r for r in brant.river_resources if r["resourceType"] == "Patient")
    medicine = {
        "resourceType": "MedicationRequest",
        "id": uuid.uuid4().hex[:12],
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "999"}],
            "text": "Newmedicine 10 MG Oral Tablet",
        },
        "subject": {"reference": f"Patient/{patient['id']}"},
        "authoredOn": "2026-11-30",
    }
    f.add_resources(session, brant.river, [medicine])
    again = lists.medications(records_of(session, brant), "current")
    assert len(again) == len(current) + 1
    assert any("Newmedicine" in m.name for m in again)
    assert len(lists_of(session, brant.account, "medications-current")) == 2
