"""Folded facts stored once per version of what folding depends on (portal.phr.facts): a page
after the first reads the stored list and only its own records; any change folds again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.models import Account, EhrConnection, FactItem, FactList, FhirRecord
from portal.phr import facts, lists, merge, preferences, visits
from portal.phr.access import RecordView, open_record
from portal.phr.records import Records
from tests.phr import factories as f
from tests.phr.two_clinics import TwoClinics, brant_at_both


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with app.app_context():
        yield db.session


@pytest.fixture
def brant(session: Session) -> TwoClinics:
    return brant_at_both(session)


def records_of(session: Session, account: Account, view: RecordView | None = None) -> Records:
    return Records(session, view or open_record(session, account.id))


def refuse_folding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fold(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("folded again: the stored facts were not used")

    monkeypatch.setattr(merge, "fold", fold)
    monkeypatch.setattr(lists, "fold", fold)


def lists_of(session: Session, account: Account, name: str) -> list[FactList]:
    return list(
        session.scalars(
            sa.select(FactList).where(FactList.account_id == account.id, FactList.name == name)
        )
    )


def encounter(patient_ref: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": uuid.uuid4().hex[:12],
        "status": "finished",
        "class": {"code": "AMB"},
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003"}]}],
        "subject": {"reference": patient_ref},
        "period": {"start": when, "end": when},
    }


def test_a_section_is_folded_once_and_its_pages_read_the_stored_facts(
    session: Session, brant: TwoClinics, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = visits.visits(records_of(session, brant.account), 1, 10)
    assert first.total == 37 and len(first.items) == 10
    (stored,) = lists_of(session, brant.account, "visits")
    assert stored.total == 37
    items = session.scalars(sa.select(FactItem).where(FactItem.list_id == stored.id)).all()
    assert sorted(i.position for i in items) == list(range(37))
    assert all(len(i.records) == 2 for i in items)  # each visit from both clinics, once

    refuse_folding(monkeypatch)
    records = records_of(session, brant.account)
    read: list[int] = []
    real_rows = Records.rows

    def rows(self: Records, categories: Any, **options: Any) -> Any:
        found = real_rows(self, categories, **options)
        if "visits" in categories:
            read.append(len(found))
        return found

    monkeypatch.setattr(Records, "rows", rows)
    last = visits.visits(records, 4, 10)
    assert last.number == 4 and last.total == 37 and len(last.items) == 7
    assert read == [14]  # the page's seven visits, each from both clinics: nothing else
    assert {v.id for v in last.items}.isdisjoint({v.id for v in first.items})
    assert all(v.also for v in last.items)


def test_a_record_stored_is_folded_again(session: Session, brant: TwoClinics) -> None:
    assert visits.visits(records_of(session, brant.account)).total == 37
    patient = next(r for r in brant.river_resources if r["resourceType"] == "Patient")
    f.add_resources(session, brant.river, [encounter(f"Patient/{patient['id']}", "2026-11-30")])
    again = visits.visits(records_of(session, brant.account))
    assert again.total == 38 and again.items[0].date and "2026" in again.items[0].date
    assert len(lists_of(session, brant.account, "visits")) == 2  # the older one kept a while


def test_a_split_and_a_join_fold_again(session: Session, brant: TwoClinics) -> None:
    first = visits.visits(records_of(session, brant.account)).items[0]
    merge.split(session, brant.account.id, first.merged)
    assert visits.visits(records_of(session, brant.account)).total == 38
    merge.join(session, brant.account.id, first.merged)
    assert visits.visits(records_of(session, brant.account)).total == 37


def test_what_the_viewer_sees_and_their_time_zone_are_part_of_the_stored_facts(
    session: Session, brant: TwoClinics, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = records_of(session, brant.account)
    digest = facts._digest(records, "immunizations", ())
    view = records.view
    limited = RecordView(view.owner, view.viewer_id, frozenset({"immunizations"}), view.connections)
    assert facts._digest(records_of(session, brant.account, limited), "immunizations", ()) != digest
    chicago = preferences.Preferences(zone="America/Chicago")
    monkeypatch.setattr(preferences, "current", lambda: chicago)
    assert facts._digest(records, "immunizations", ()) != digest  # a vaccine's day is theirs
    assert facts._digest(records, "immunizations", ("other filter",)) != digest


def test_a_filter_is_part_of_the_stored_facts(session: Session, brant: TwoClinics) -> None:
    records = records_of(session, brant.account)
    active, everything = lists.care_plans(records, "active"), lists.care_plans(records, "all")
    assert len(active) < len(everything)
    assert {p.title for p in active} <= {p.title for p in everything}
    assert len(lists.care_plans(records_of(session, brant.account), "active")) == len(active)


def test_a_name_keeps_only_its_latest_lists(session: Session, brant: TwoClinics) -> None:
    for version in range(facts.KEEP + 2):
        session.execute(
            sa.update(EhrConnection)
            .where(EhrConnection.id == brant.river.id)
            .values(data_version=version + 10)
        )
        session.expire_all()
        assert visits.visits(records_of(session, brant.account)).total == 37
    kept = lists_of(session, brant.account, "visits")
    assert len(kept) == facts.KEEP
    items = session.scalar(sa.select(sa.func.count()).select_from(FactItem))
    assert items == sum(k.total for k in session.scalars(sa.select(FactList)))


def test_two_requests_storing_the_same_facts_keep_one(session: Session, brant: TwoClinics) -> None:
    records = records_of(session, brant.account)
    entry = facts.Entry((1, 2), (), {"k": 1})
    facts._store(session, brant.account.id, "twin", "d" * 64, [entry])
    facts._store(session, brant.account.id, "twin", "d" * 64, [entry, entry])  # no error
    (kept,) = lists_of(session, brant.account, "twin")
    assert kept.total == 1
    assert facts.folded(records, "none", list, ()).all() == []  # an empty list is stored too
    assert lists_of(session, brant.account, "none")[0].total == 0


def test_a_record_marked_in_error_never_shows_from_a_stored_list(
    session: Session, brant: TwoClinics
) -> None:
    shown = visits.visits(records_of(session, brant.account), 1, 5).items
    session.execute(
        sa.update(FhirRecord)
        .where(FhirRecord.id.in_(shown[0].merged))
        .values(status="entered-in-error")
    )  # under a stored list (a sync bumps the version too; even so it never shows)
    again = visits.visits(records_of(session, brant.account), 1, 5)
    assert [v.id for v in again.items] == [v.id for v in shown[1:]]


def test_social_history_and_questionnaires_are_worked_out_once(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portal.phr import answers
    from tests.web.test_answers import observation, phq9

    vito, connection, _ = f.patient_with(session, "vito_feeney")  # smoking at every visit
    parts = [{"code": {"text": "Little interest"}, "valueString": "Several days"}]
    f.add_resources(
        session,
        connection,
        [
            phq9("2024-03-01", 4),
            observation("survey", "1-1", "A form", "2024-03-02", component=parts),
        ],
    )
    social = answers.social_history(records_of(session, vito))
    surveys = answers.questionnaires(records_of(session, vito))
    assert social and len(surveys) == 2

    def topics(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("worked out again: the stored topics were not used")

    monkeypatch.setattr(answers, "_topics", topics)
    records = records_of(session, vito)
    assert answers.social_history(records) == social
    assert answers.latest_social(records, 2) == social[:2]
    assert answers.questionnaires(records) == surveys
    assert any(t.latest.parts for t in surveys)  # a questionnaire's questions come back too
