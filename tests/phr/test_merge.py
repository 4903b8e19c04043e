"""The same fact from several sources, shown once with "also reported by"; conflicts; splits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.models import Account, EhrConnection
from portal.phr import labs, lists, merge, vitals
from portal.phr.access import open_record
from portal.phr.entries import service, shapes
from portal.phr.entries.catalog import MEDICATIONS, find_concept
from portal.phr.records import Records
from tests.phr import factories as f

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with app.app_context():
        yield db.session


def records_of(session: Session, account: Account) -> Records:
    return Records(session, open_record(session, account.id))


def med(
    connection: EhrConnection, code: str, status: str = "active", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": f"med-{connection.id}-{code}-{status}-{len(extra)}",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": code, "display": f"Drug {code}"}]
        },
        "subject": {"reference": f"Patient/{connection.patient_id}"},
        "authoredOn": "2024-01-01",
        **extra,
    }


def allergy(connection: EhrConnection, status: str, rid: str) -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "id": rid,
        "clinicalStatus": {"coding": [{"code": status}]},
        "verificationStatus": {"coding": [{"code": "confirmed"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91935009"}]},
        "patient": {"reference": f"Patient/{connection.patient_id}"},
    }


def vaccine(connection: EhrConnection, day: str, rid: str) -> dict[str, Any]:
    return {
        "resourceType": "Immunization",
        "id": rid,
        "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]},
        "patient": {"reference": f"Patient/{connection.patient_id}"},
        "occurrenceDateTime": day,
    }


@pytest.fixture
def two(session: Session) -> tuple[Account, EhrConnection, EhrConnection]:
    account = f.make_account(session)
    river = f.make_connection(session, account, "Riverside General Hospital")
    lake = f.make_connection(session, account, "Lakeside Family Clinic")
    return account, river, lake


def test_one_medicine_from_two_clinics_is_one_item(session: Session, two) -> None:
    account, river, lake = two
    f.add_resources(session, river, [med(river, "316049")])
    f.add_resources(session, lake, [med(lake, "316049"), med(lake, "197604")])
    items = lists.medications(records_of(session, account), "all")
    assert len(items) == 2
    merged = next(i for i in items if i.also)
    assert merged.source == "Riverside General Hospital"
    assert merged.also == ("Lakeside Family Clinic",) and merged.conflict is None
    assert len(merged.merged) == 2


def test_a_clinic_never_folds_its_own_two_records(session: Session, two) -> None:
    account, river, _ = two
    older = med(river, "316049", "stopped", authoredOn="2020-01-01")
    f.add_resources(session, river, [med(river, "316049"), older])
    items = lists.medications(records_of(session, account), "all")
    assert len(items) == 2 and not any(i.also for i in items)


def test_shared_identifiers_fold_even_with_other_codes(session: Session, two) -> None:
    account, river, lake = two
    ident = {"identifier": [{"system": "urn:oid:1.2.3", "value": "rx-77"}]}
    f.add_resources(session, river, [med(river, "316049", **ident)])
    f.add_resources(session, lake, [med(lake, "999999", **ident)])
    items = lists.medications(records_of(session, account), "all")
    assert len(items) == 1 and items[0].also == ("Lakeside Family Clinic",)


def take(account: Account, session: Session, name: str, taking: bool) -> int:
    found = find_concept(MEDICATIONS, name)
    what = shapes.concept(found, found.name if found else name)

    def build(patient: dict[str, str], rid: str, ident: str) -> dict[str, Any]:
        return shapes.medication(
            what,
            taking=taking,
            dose=None,
            frequency=None,
            started=None,
            resource_id=rid,
            identifier=ident,
            patient=patient,
            recorded=datetime(2026, 1, 1, tzinfo=UTC),
            note=None,
        )

    return service.add(session, account, build).id


def test_a_medicine_the_patient_also_entered_is_one_item(session: Session, two) -> None:
    account, river, _ = two
    f.add_resources(session, river, [med(river, "316049")])
    take(account, session, "Hydrochlorothiazide 25 mg", taking=True)
    items = lists.medications(records_of(session, account), "current")
    assert len(items) == 1
    assert items[0].source == "Riverside General Hospital" and items[0].also == ("You",)


def test_a_medicine_the_patient_stopped_is_a_conflict_shown(session: Session, two) -> None:
    account, river, _ = two
    f.add_resources(session, river, [med(river, "316049")])
    take(account, session, "Hydrochlorothiazide 25 mg", taking=False)
    current = lists.medications(records_of(session, account), "current")
    assert len(current) == 1  # still listed as current: one source says so
    assert current[0].conflict == "Riverside General Hospital says current; you say stopped."
    assert lists.medications(records_of(session, account), "past") == []


def test_an_allergy_active_at_one_clinic_and_resolved_at_another(session: Session, two) -> None:
    account, river, lake = two
    f.add_resources(session, river, [allergy(river, "active", "a1")])
    f.add_resources(session, lake, [allergy(lake, "resolved", "a2")])
    items = lists.allergies(records_of(session, account))
    assert len(items) == 1 and items[0].active
    assert items[0].conflict == (
        "Riverside General Hospital says current; Lakeside Family Clinic says resolved."
    )


def test_a_dose_is_folded_only_on_the_same_day(session: Session, two) -> None:
    account, river, lake = two
    f.add_resources(session, river, [vaccine(river, "2024-10-01", "v1")])
    f.add_resources(
        session, lake, [vaccine(lake, "2024-10-01", "v2"), vaccine(lake, "2023-10-01", "v3")]
    )
    page = lists.immunizations(records_of(session, account))
    assert len(page.items) == 2
    assert [i.also for i in page.items] == [("Lakeside Family Clinic",), ()]


def test_a_split_is_never_folded_again(session: Session, two) -> None:
    account, river, lake = two
    f.add_resources(session, river, [med(river, "316049")])
    f.add_resources(session, lake, [med(lake, "316049")])
    (item,) = lists.medications(records_of(session, account), "all")
    assert merge.split(session, account.id, item.merged) == 1
    assert merge.split(session, account.id, item.merged) == 0  # already split
    items = lists.medications(records_of(session, account), "all")
    assert len(items) == 2 and not any(i.also for i in items)


def test_the_same_patient_at_two_clinics_folds_on_shared_synthea_data(session: Session) -> None:
    account, river, _ = f.patient_with(session, "brant_jacobson")
    alone = lists.medications(records_of(session, account), "all")
    lake = f.make_connection(session, account, "Lakeside Family Clinic")
    f.add_bundle(session, lake, "brant_jacobson")
    records = records_of(session, account)
    both = lists.medications(records, "all")
    assert len(both) == len(alone)  # every medicine once
    assert all(i.also == ("Lakeside Family Clinic",) for i in both)
    assert all(p.also == ("Lakeside Family Clinic",) for p in lists.problems(records, "all"))
    del river


def test_readings_sent_by_two_clinics_are_charted_once(session: Session) -> None:
    account, _, resources = f.patient_with(session, "brant_jacobson")
    lab_code = next(
        r["code"]["coding"][0]["code"]
        for r in resources
        if r["resourceType"] == "Observation"
        and r["category"][0]["coding"][0]["code"] == "laboratory"
    )
    single = records_of(session, account)
    weight_alone = getattr(vitals.vital_history(single, "weight"), "card", None)
    glucose_alone = labs.test_history(single, lab_code)
    assert weight_alone is not None and glucose_alone is not None
    lake = f.make_connection(session, account, "Lakeside Family Clinic")
    f.add_bundle(session, lake, "brant_jacobson")
    both = records_of(session, account)
    weight = getattr(vitals.vital_history(both, "weight"), "card", None)
    glucose = labs.test_history(both, lab_code)
    assert weight is not None and glucose is not None
    assert len(weight.readings) == len(weight_alone.readings)
    assert all(r.also == ("Lakeside Family Clinic",) for r in weight.readings)
    assert weight.chart is not None and weight_alone.chart is not None
    assert len(weight.chart.series[0].points) == len(weight_alone.chart.series[0].points)
    assert len(glucose.results) == len(glucose_alone.results)
    assert all(r.also == ("Lakeside Family Clinic",) for r in glucose.results)


def test_two_readings_at_one_moment_with_other_values_stay_two(session: Session, two) -> None:
    account, river, lake = two
    reading = {
        "resourceType": "Observation",
        "id": "w1",
        "status": "final",
        "category": [{"coding": [{"code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{river.patient_id}"},
        "effectiveDateTime": "2024-01-01T10:00:00Z",
        "valueQuantity": {
            "value": 80,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
    }
    other = {**reading, "id": "w2", "valueQuantity": {**reading["valueQuantity"], "value": 81}}
    f.add_resources(session, river, [reading])
    f.add_resources(session, lake, [other, {**reading, "id": "w3"}])
    found = vitals.vital_history(records_of(session, account), "weight")
    assert found is not None
    card = found.card
    assert sorted((r.text, r.also) for r in card.readings) == [
        ("80 kg", ("Lakeside Family Clinic",)),
        ("81 kg", ()),
    ]
