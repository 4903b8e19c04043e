"""Each folding rule of portal.phr.merge, by hand-built cases and on Brant Jacobson's two
clinics: visits, procedures, care plans, goals, care teams, the directory, reports, the
summary's recent lab results; splits undone ("these are the same"), also after a re-sync."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.extensions import db
from portal.models import Account, EhrConnection
from portal.phr import documents, labs, lists, merge, summary, visits
from portal.phr.access import open_record
from portal.phr.classify import classify
from portal.phr.records import Records
from portal.sync.store import prepare_page, upsert_records
from tests.phr import factories as f
from tests.phr.two_clinics import LAKESIDE, RIVERSIDE, TwoClinics, brant_at_both

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
NPI = "http://hl7.org/fhir/sid/us-npi"


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with app.app_context():
        yield db.session


@pytest.fixture
def two(session: Session) -> tuple[Account, EhrConnection, EhrConnection]:
    account = f.make_account(session)
    river = f.make_connection(session, account, RIVERSIDE)
    lake = f.make_connection(session, account, LAKESIDE)
    return account, river, lake


@pytest.fixture
def brant(session: Session) -> TwoClinics:
    return brant_at_both(session)


def records_of(session: Session, account: Account) -> Records:
    return Records(session, open_record(session, account.id))


def rid() -> str:
    return uuid.uuid4().hex


def visit(code: str, start: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": rid(),
        "status": "finished",
        "class": {"code": "AMB"},
        "type": [{"coding": [{"system": SNOMED, "code": code, "display": f"Visit {code}"}]}],
        "period": {"start": start},
        **extra,
    }


def procedure(code: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": rid(),
        "status": "completed",
        "code": {"coding": [{"system": SNOMED, "code": code, "display": f"Procedure {code}"}]},
        "performedDateTime": when,
    }


def plan(title: str, start: str, end: str | None = None) -> dict[str, Any]:
    period = {"start": start, **({"end": end} if end else {})}
    return {
        "resourceType": "CarePlan",
        "id": rid(),
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [{"system": SNOMED, "code": "1"}], "text": title}],
        "period": period,
    }


def goal(text: str, start: str) -> dict[str, Any]:
    return {
        "resourceType": "Goal",
        "id": rid(),
        "lifecycleStatus": "active",
        "description": {"text": text},
        "startDate": start,
    }


def team(name: str, start: str) -> dict[str, Any]:
    return {
        "resourceType": "CareTeam",
        "id": rid(),
        "status": "active",
        "name": name,
        "period": {"start": start},
    }


def clinician(family: str, npi: str | None) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": rid(),
        "name": [{"family": family, "given": ["Ann"], "prefix": ["Dr."]}],
        **({"identifier": [{"system": NPI, "value": npi}]} if npi else {}),
    }


def clinic(name: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": rid(),
        "identifier": [{"system": "https://example.org/orgs", "value": rid()}],
        "name": name,
    }


def report(code: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport",
        "id": rid(),
        "status": "final",
        "category": [{"coding": [{"code": "LAB"}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": f"Report {code}"}]},
        "effectiveDateTime": when,
        "presentedForm": [{"contentType": "text/plain", "data": "UmVzdWx0cw=="}],
    }


def lab(code: str, when: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid(),
        "status": "final",
        "category": [{"coding": [{"code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": f"Test {code}"}]},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "mg/dL", "code": "mg/dL"},
    }


def add(session: Session, connection: EhrConnection, *resources: dict[str, Any]) -> None:
    f.add_resources(session, connection, list(resources))


# ---- visits: same type and same moment ------------------------------------------------------


def test_a_visit_at_two_clinics_is_one_visit(session: Session, two) -> None:
    account, river, lake = two
    add(session, river, visit("185349003", "2024-03-01T09:00:00Z"))
    add(session, lake, visit("185349003", "2024-03-01T09:00:00Z"))
    page = visits.visits(records_of(session, account))
    assert page.total == len(page.items) == 1
    assert page.items[0].source == RIVERSIDE and page.items[0].also == (LAKESIDE,)
    assert len(page.items[0].merged) == 2


def test_visits_of_another_moment_or_type_stay_apart(session: Session, two) -> None:
    account, river, lake = two
    add(session, river, visit("185349003", "2024-03-01T09:00:00Z"))
    add(
        session,
        lake,
        visit("185349003", "2024-03-01T10:30:00Z"),  # the same type, later that day
        visit("50849002", "2024-03-01T09:00:00Z"),  # another type, the same moment
    )
    page = visits.visits(records_of(session, account))
    assert page.total == len(page.items) == 3
    assert not any(v.also for v in page.items)


def test_a_shared_visit_identifier_folds_before_the_rules(session: Session, two) -> None:
    account, river, lake = two
    ident = [{"system": "urn:oid:1.2.3", "value": "enc-77"}]
    add(session, river, visit("185349003", "2024-03-01T09:00:00Z", identifier=ident))
    add(session, lake, visit("50849002", "2024-03-02T09:00:00Z", identifier=ident))
    page = visits.visits(records_of(session, account))
    (only,) = page.items
    assert page.total == 1 and (only.source, only.also) == (LAKESIDE, (RIVERSIDE,))  # newest


def test_one_clinics_two_visits_at_one_moment_stay_two(session: Session, two) -> None:
    account, river, _ = two
    add(session, river, *(visit("185349003", "2024-03-01T09:00:00Z") for _ in range(2)))
    assert visits.visits(records_of(session, account)).total == 2


def test_visit_pages_count_and_page_facts_not_rows(session: Session, two) -> None:
    account, river, lake = two
    starts = [f"2024-03-{day:02d}T09:00:00Z" for day in range(1, 13)]
    add(session, river, *(visit("185349003", s) for s in starts))
    add(session, lake, *(visit("185349003", s) for s in starts))
    records = records_of(session, account)
    first, second = visits.visits(records, 1, 10), visits.visits(records, 2, 10)
    assert first.total == second.total == 12 and first.pages == 2
    assert len(first.items) == 10 and len(second.items) == 2
    assert {v.date for v in first.items} | {v.date for v in second.items} == {
        f"{day} Mar 2024" for day in range(1, 13)
    }
    row = records.record(second.items[0].merged[1])
    assert row is not None and visits.page_of(records, row, 10) == 2


# ---- procedures: same code and same moment --------------------------------------------------


def test_a_procedure_at_two_clinics_is_one_and_another_day_is_another(
    session: Session, two
) -> None:
    account, river, lake = two
    add(session, river, procedure("73761001", "2024-05-01T10:00:00Z"))
    add(
        session,
        lake,
        procedure("73761001", "2024-05-01T10:00:00Z"),
        procedure("73761001", "2024-06-01T10:00:00Z"),
    )
    page = lists.procedures(records_of(session, account), 1)
    assert page.total == len(page.items) == 2
    assert [p.also for p in page.items] == [(), (LAKESIDE,)]  # newest first


# ---- care plans and goals: same title and period ----------------------------------------------


def test_a_care_plan_folds_by_title_and_period(session: Session, two) -> None:
    account, river, lake = two
    add(session, river, plan("Asthma self management", "2020-01-01"))
    add(
        session,
        lake,
        plan("asthma  self management", "2020-01-01"),  # the same title, spaced and cased
        plan("Asthma self management", "2021-01-01"),  # another period
        plan("Diabetes self management", "2020-01-01"),
    )
    plans = lists.care_plans(records_of(session, account))
    assert len(plans) == 3
    asthma = [p for p in plans if p.title == "Asthma self management"]
    assert sorted(p.also for p in asthma) == [(), (LAKESIDE,)]


def test_a_goal_folds_by_description_and_start(session: Session, two) -> None:
    account, river, lake = two
    add(session, river, goal("Walk 30 minutes a day", "2022-02-02"))
    add(
        session,
        lake,
        goal("Walk 30 minutes a day", "2022-02-02"),
        goal("Walk 30 minutes a day", "2023-02-02"),
    )
    items = lists.goals(records_of(session, account))
    assert sorted(g.also for g in items) == [(), (LAKESIDE,)]


def test_a_care_team_folds_by_name_and_period(session: Session, two) -> None:
    account, river, lake = two
    add(session, river, team("Asthma team", "2020-01-01"))
    add(session, lake, team("Asthma team", "2020-01-01"), team("Asthma team", "2022-01-01"))
    teams = lists.care_teams(records_of(session, account))
    assert sorted(t.also for t in teams) == [(), (LAKESIDE,)]


# ---- clinicians and clinics: identifier (NPI), else name ----------------------------------------


def test_a_clinician_folds_by_npi_even_when_named_otherwise(session: Session, two) -> None:
    account, river, lake = two
    add(session, river, clinician("Towne", "240"))
    add(session, lake, clinician("Towne-Smith", "240"))
    (only,) = lists.contacts(records_of(session, account))
    assert only.kind == "Clinician" and only.also == (LAKESIDE,)


def test_namesakes_with_other_npis_stay_two_and_a_clinic_folds_by_name(
    session: Session, two
) -> None:
    account, river, lake = two
    add(
        session, river, clinician("Towne", "240"), clinic("Lowell General"), clinician("Moen", None)
    )
    add(
        session, lake, clinician("Towne", "999"), clinic("LOWELL  general"), clinician("Moen", None)
    )
    add(session, lake, {**clinic("Dr. Ann Moen"), "name": "Dr. Ann Moen"})  # a clinic, not her
    contacts = lists.contacts(records_of(session, account))
    summary_of = sorted((c.kind, c.name, c.also) for c in contacts)
    assert summary_of == [
        ("Clinic", "Dr. Ann Moen", ()),
        ("Clinic", "Lowell General", (LAKESIDE,)),
        ("Clinician", "Dr. Ann Moen", (LAKESIDE,)),
        ("Clinician", "Dr. Ann Towne", ()),
        ("Clinician", "Dr. Ann Towne", ()),
    ]


# ---- diagnostic reports and the summary's recent results ----------------------------------------


def test_a_report_sent_by_two_clinics_is_one_document(session: Session, two) -> None:
    account, river, lake = two
    add(session, river, report("57698-3", "2024-01-01T08:00:00Z"))
    add(
        session,
        lake,
        report("57698-3", "2024-01-01T08:00:00Z"),
        report("57698-3", "2024-02-01T08:00:00Z"),
    )
    page = documents.documents(records_of(session, account))
    assert page.total == len(page.items) == 2
    assert sorted(d.also for d in page.items) == [(), (LAKESIDE,)]


def test_recent_results_show_a_result_sent_twice_once(session: Session, two) -> None:
    account, river, lake = two
    results = [lab(str(n), f"2024-01-{n + 1:02d}T08:00:00Z", 5.0 + n) for n in range(5)]
    add(session, river, *results)
    add(session, lake, *({**r, "id": rid()} for r in results))
    recent = labs.recent_results(records_of(session, account), 4)
    # Sent as 9.0 (a decimal keeps its digits).
    assert [r.text for _, r in recent] == ["9.0 mg/dL", "8.0 mg/dL", "7.0 mg/dL", "6.0 mg/dL"]
    assert all(r.also == (LAKESIDE,) for _, r in recent)


# ---- Brant Jacobson at Riverside and Lakeside ----------------------------------------------------


def of_type(resources: list[dict[str, Any]], rtype: str) -> int:
    return sum(1 for r in resources if r["resourceType"] == rtype)


def test_brant_sees_each_visit_and_procedure_once(session: Session, brant: TwoClinics) -> None:
    assert of_type(brant.river_resources, "Encounter") == 37
    records = records_of(session, brant.account)
    page = visits.visits(records, 1, 100)
    assert page.total == len(page.items) == 37
    assert all(v.source == RIVERSIDE and v.also == (LAKESIDE,) for v in page.items)
    procedures = lists.procedures(records, 1, 100)
    assert procedures.total == len(procedures.items) == 12
    assert all(p.also == (LAKESIDE,) for p in procedures.items)


def test_brant_has_one_asthma_plan_and_each_clinician_once(
    session: Session, brant: TwoClinics
) -> None:
    records = records_of(session, brant.account)
    plans = lists.care_plans(records)
    assert [p.title for p in plans].count("Asthma self management") == 1
    assert len(plans) == of_type(brant.river_resources, "CarePlan")
    assert all(p.also == (LAKESIDE,) for p in plans)
    contacts = lists.contacts(records)
    names = [c.name for c in contacts]
    assert len(names) == len(set(names)) == 4  # two clinicians, two clinics
    assert "Dr. Ignacio Towne" in names
    assert all(c.also == (LAKESIDE,) for c in contacts)


def test_brants_summary_shows_egfr_of_17_may_2020_once(session: Session, brant: TwoClinics) -> None:
    s = summary.summary(records_of(session, brant.account), utcnow())
    shown = [(name, r.text, r.date) for name, r in s.labs]
    egfr = ("Estimated Glomerular Filtration Rate", "118 mL/min/1.73 m²", "17 May 2020")
    assert shown.count(egfr) == 1 and len(shown) == len(set(shown))
    assert all(r.also == (LAKESIDE,) for _, r in s.labs)
    assert s.immunization_count == of_type(brant.river_resources, "Immunization")


# ---- a split undone, and both kept over a re-sync ----------------------------------------------


def resync(session: Session, connection: EhrConnection, resources: list[dict[str, Any]]) -> None:
    """The clinic sends the same records again, as a sync's upsert stores them."""
    by_type: dict[str, list[tuple[Any, str]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append((r, "match"))
    for rtype, page in by_type.items():
        checked = prepare_page(
            page, rtype, connection.patient_id, (), "https://x", connection.id, utcnow()
        )
        assert not checked.quarantined
        upsert_records(session, checked.rows)


def test_a_split_visit_is_joined_again_and_both_survive_a_resync(
    session: Session, brant: TwoClinics
) -> None:
    records = records_of(session, brant.account)
    first = visits.visits(records).items[0]
    assert merge.split(session, brant.account.id, first.merged) == 1
    resync(
        session, brant.lake, [r for r in brant.lake_resources if r["resourceType"] == "Encounter"]
    )
    apart = visits.visits(records_of(session, brant.account), 1, 100)
    assert apart.total == len(apart.items) == 38
    kept = [v for v in apart.items if v.apart]
    assert len(kept) == 2 and {v.apart for v in kept} == {tuple(sorted(first.merged))}
    assert {v.source for v in kept} == {RIVERSIDE, LAKESIDE} and not any(v.also for v in kept)
    assert merge.join(session, brant.account.id, kept[0].apart) == 1
    resync(
        session, brant.lake, [r for r in brant.lake_resources if r["resourceType"] == "Encounter"]
    )
    again = visits.visits(records_of(session, brant.account), 1, 100)
    assert again.total == 37 and not any(v.apart for v in again.items)
    assert again.items[0].also == (LAKESIDE,)


def test_join_leaves_other_splits_alone(session: Session, two) -> None:
    account, river, lake = two
    add(
        session,
        river,
        procedure("1", "2024-01-01T00:00:00Z"),
        procedure("2", "2024-01-02T00:00:00Z"),
    )
    add(
        session,
        lake,
        procedure("1", "2024-01-01T00:00:00Z"),
        procedure("2", "2024-01-02T00:00:00Z"),
    )
    a, b = lists.procedures(records_of(session, account), 1).items
    merge.split(session, account.id, a.merged)
    merge.split(session, account.id, b.merged)
    assert merge.join(session, account.id, a.merged) == 1
    page = lists.procedures(records_of(session, account), 1)
    assert page.total == 3 and sum(1 for p in page.items if p.apart) == 2


def test_classify_gives_visits_their_type_code() -> None:
    """The visit rule reads the type code the sync stores (not the class)."""
    c = classify(visit("185349003", "2024-03-01T09:00:00Z"))
    assert (c.code_system, c.code) == (SNOMED, "185349003")


def test_brants_latest_vitals_are_shown_as_riverside_has_them_also_lakeside(
    session: Session, brant: TwoClinics
) -> None:
    s = summary.summary(records_of(session, brant.account), utcnow())
    assert s.vitals and len({name for name, _ in s.vitals}) == len(s.vitals)
    assert all((v.source, v.also) == (RIVERSIDE, (LAKESIDE,)) for _, v in s.vitals)
