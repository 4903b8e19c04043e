"""The patient's own measurements: FHIR shape, Provenance, history, delete and undo."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from fhirclient.models.observation import Observation
from flask import Flask
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.models import EhrConnection, FhirRecord
from portal.phr import vitals
from portal.phr.access import open_record
from portal.phr.entries import service, shapes
from portal.phr.entries.catalog import (
    ALLERGENS,
    CONDITIONS,
    MEASURE_BY_KEY,
    MEASURES,
    MEDICATIONS,
    SYMPTOMS,
    VACCINES,
    find_concept,
)
from portal.phr.records import Records
from portal.smart.errors import NotConnected
from portal.sync.engine import enqueue
from tests.phr import factories as f

WHEN = datetime(2026, 3, 4, 8, 30, tzinfo=timezone(timedelta(hours=2)))


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with app.app_context():
        yield db.session


def entry(key: str, *values: str, unit: str | None = None, note: str | None = None):
    measure = MEASURE_BY_KEY[key]
    return service.MeasurementInput(
        measure,
        tuple(Decimal(v) for v in values),
        unit or measure.units[0].code,
        WHEN,
        note,
    )


def test_blood_pressure_is_a_us_core_panel_performed_by_the_patient(session: Session) -> None:
    account = f.make_account(session, "Ana Lima")
    record = service.add_measurement(session, account, entry("blood-pressure", "128", "84"))
    raw = record.raw
    Observation(raw, strict=True)  # valid FHIR R4
    source = service.own_source(session, account)
    patient = {"reference": f"Patient/{source.patient_id}", "display": "Ana Lima"}
    assert raw["status"] == "final"
    assert raw["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "85354-9",
        "display": "Blood pressure panel with all children optional",
    }
    assert raw["category"][0]["coding"][0]["code"] == "vital-signs"
    assert raw["subject"] == patient and raw["performer"] == [patient]
    assert raw["effectiveDateTime"] == "2026-03-04T08:30:00+02:00"
    systolic, diastolic = raw["component"]
    assert systolic["code"]["coding"][0]["code"] == "8480-6"
    assert systolic["valueQuantity"] == {
        "value": 128,
        "unit": "mmHg",
        "system": "http://unitsofmeasure.org",
        "code": "mm[Hg]",
    }
    assert diastolic["code"]["coding"][0]["code"] == "8462-4"
    assert diastolic["valueQuantity"]["value"] == 84
    assert raw["identifier"][0]["system"] == "urn:ietf:rfc:3986"
    assert raw["identifier"][0]["value"].startswith("urn:uuid:")
    assert raw["meta"]["versionId"] == "1"
    assert record.category == "vitals" and record.connection_id == source.id


@pytest.mark.parametrize("measure", MEASURES, ids=lambda m: m.key)
def test_every_measure_has_its_loinc_code_and_ucum_unit(session: Session, measure) -> None:
    account = f.make_account(session)
    values = ("120", "80") if measure.components else (str(int(measure.low) + 1),)
    for unit in measure.units:
        record = service.add_measurement(
            session, account, entry(measure.key, *values, unit=unit.code)
        )
        raw = record.raw
        Observation(raw, strict=True)
        assert raw["code"]["coding"][0]["code"] == measure.loinc
        quantity = (raw.get("component") or [raw])[0]["valueQuantity"]
        assert quantity["system"] == "http://unitsofmeasure.org"
        assert quantity["code"] == unit.code
        assert record.category == "vitals"  # shown with the vitals, whatever its category


def test_each_version_has_a_provenance_naming_the_patient_as_author(session: Session) -> None:
    account = f.make_account(session)
    record = service.add_measurement(session, account, entry("weight", "70.5"))
    service.edit_measurement(session, account, record.id, entry("weight", "71"))
    provenances = session.scalars(
        sa.select(FhirRecord.raw)
        .where(FhirRecord.resource_type == "Provenance")
        .order_by(FhirRecord.id)
    ).all()
    assert [p["target"][0]["reference"] for p in provenances] == [
        f"Observation/{record.resource_id}/_history/1",
        f"Observation/{record.resource_id}/_history/2",
    ]
    source = service.own_source(session, account)
    for provenance in provenances:
        agent = provenance["agent"][0]
        assert agent["type"]["coding"][0]["code"] == "author"
        assert agent["who"]["reference"] == f"Patient/{source.patient_id}"
        shapes.check(provenance)


def test_edits_keep_history_and_delete_can_be_undone(session: Session) -> None:
    account = f.make_account(session)
    record = service.add_measurement(session, account, entry("weight", "70.5", note="morning"))
    identifier = record.raw["identifier"]
    service.edit_measurement(session, account, record.id, entry("weight", "71.2"))
    service.delete(session, account, record.id)
    assert record.status == "entered-in-error"
    service.restore(session, account, record.id)
    history = service.history(session, account, record.id)
    assert [r.action for r in history] == ["restored", "deleted", "edited", "created"]
    assert [r.version for r in history] == [4, 3, 2, 1]
    assert history[-1].raw["valueQuantity"]["value"] == 70.5
    assert history[-1].raw["note"] == [{"text": "morning"}]
    assert history[0].raw["valueQuantity"]["value"] == 71.2  # undo brings back the latest
    assert record.raw["status"] == "final" and record.raw["identifier"] == identifier
    assert record.raw["meta"]["versionId"] == "4"


def test_a_deleted_entry_leaves_every_page_and_comes_back(session: Session) -> None:
    account = f.make_account(session)
    record = service.add_measurement(session, account, entry("heart-rate", "64"))

    def readings() -> list[str]:
        found = vitals.vital_history(
            Records(session, open_record(session, account.id)), "heart-rate"
        )
        return [r.text for r in found.card.readings] if found else []

    assert readings() == ["64 per minute"]
    service.delete(session, account, record.id)
    assert readings() == []
    service.restore(session, account, record.id)
    assert readings() == ["64 per minute"]


def test_own_entries_merge_into_the_vitals_with_a_you_badge(session: Session) -> None:
    account, _, _ = f.patient_with(session, "vito_feeney")
    service.add_measurement(session, account, entry("blood-pressure", "131", "79"))
    records = Records(session, open_record(session, account.id))
    found = vitals.vital_history(records, "blood-pressure")
    assert found is not None and found.card.chart is not None
    card = found.card
    mine = [r for r in card.readings if r.mine]
    assert [(r.text, r.source) for r in mine] == [("131/79 mmHg", "You")]
    assert {r.source for r in card.readings if not r.mine} == {"Riverside General Hospital"}
    points = [p for s in card.chart.series for p in s.points]
    assert sum(p.mine for p in points) == 2 and len(points) > 2  # top and bottom numbers
    assert card.chart.mine


def test_entries_of_others_are_out_of_reach(session: Session) -> None:
    me, other = f.make_account(session, "Me"), f.make_account(session, "Other")
    theirs = service.add_measurement(session, other, entry("weight", "80"))
    for act in (service.entry_of, service.delete, service.restore, service.history):
        with pytest.raises(service.EntryNotFound):
            act(session, me, theirs.id)
    with pytest.raises(service.EntryNotFound):
        service.edit_measurement(session, me, theirs.id, entry("weight", "81"))
    assert theirs.raw["valueQuantity"]["value"] == 80


def test_one_self_source_per_person_and_it_is_not_a_clinic(session: Session) -> None:
    account = f.make_account(session)
    first = service.own_source(session, account)
    assert service.own_source(session, account).id == first.id
    assert first.is_self and first.source_name == "You"
    count = session.scalar(
        sa.select(sa.func.count()).where(
            EhrConnection.account_id == account.id, EhrConnection.kind == "self"
        )
    )
    assert count == 1
    with pytest.raises(ValueError, match="not an EHR connection"):
        first.server  # noqa: B018  # code that talks to EHRs never gets the self source
    with pytest.raises(NotConnected):
        enqueue(session, first.id)  # nothing to fetch from the patient's own entries


def test_saving_bumps_the_record_version(session: Session) -> None:
    account = f.make_account(session)
    source = service.own_source(session, account)
    before = source.data_version
    service.add_measurement(session, account, entry("steps", "8000"))
    session.refresh(source)
    assert source.data_version == before + 1
    assert datetime.now(UTC) > WHEN


# ---- coded entries -------------------------------------------------------------------------

NOW = datetime(2026, 3, 4, 9, tzinfo=UTC)


def build(kind: str, patient: dict[str, str]) -> dict[str, Any]:
    metformin = find_concept(MEDICATIONS, "metformin 500 mg extended-release tablet")
    peanuts = find_concept(ALLERGENS, "Peanuts")
    gout = find_concept(CONDITIONS, "gout")
    flu = find_concept(VACCINES, "Flu shot")
    headache = find_concept(SYMPTOMS, "headache")
    assert metformin and peanuts and gout and flu and headache
    ids = {"resource_id": "abc", "identifier": "urn:uuid:1", "patient": patient, "recorded": NOW}
    if kind == "medication":
        return shapes.medication(
            shapes.concept(metformin, metformin.name),
            taking=True,
            dose="500 mg",
            frequency="twice a day",
            started=date(2024, 1, 2),
            note="with food",
            **ids,
        )
    if kind == "allergy":
        return shapes.allergy(
            shapes.concept(peanuts, peanuts.name),
            kind="allergy",
            category="food",
            active=True,
            reaction="Hives",
            severity="moderate",
            onset=date(2000, 5, 1),
            note=None,
            **ids,
        )
    if kind == "condition":
        return shapes.condition(
            shapes.concept(gout, gout.name),
            category="problem-list-item",
            active=False,
            onset=date(2010, 1, 1),
            ended=date(2012, 1, 1),
            severity=None,
            note=None,
            **ids,
        )
    if kind == "symptom":
        return shapes.condition(
            shapes.concept(headache, headache.name),
            category="health-concern",
            active=True,
            onset=NOW,
            ended=None,
            severity="severe",
            note=None,
            **ids,
        )
    if kind == "immunization":
        return shapes.immunization(
            shapes.concept(flu, flu.name),
            given=date(2025, 10, 1),
            place="Pharmacy",
            note=None,
            **ids,
        )
    return shapes.journal_note("Knee", "Knee hurt.", **ids)


PATIENT = {"reference": "Patient/me", "display": "Ana"}


@pytest.mark.parametrize(
    "kind", ["medication", "allergy", "condition", "symptom", "immunization", "note"]
)
def test_coded_entries_are_valid_us_core_shapes(kind: str) -> None:
    resource = shapes.check(build(kind, PATIENT))
    assert resource["identifier"][0]["system"] == "urn:ietf:rfc:3986"
    assert resource["meta"]["tag"][0]["code"] == "PATAST"
    if kind == "medication":
        assert resource["intent"] == "plan" and resource["status"] == "active"
        assert resource["reportedReference"] == PATIENT and resource["subject"] == PATIENT
        coding = resource["medicationCodeableConcept"]["coding"][0]
        assert coding["system"] == "http://www.nlm.nih.gov/research/umls/rxnorm"
        assert coding["code"] == "860975"
        assert resource["dosageInstruction"][0]["text"] == "500 mg twice a day"
    elif kind == "allergy":
        assert resource["recorder"] == PATIENT and resource["asserter"] == PATIENT
        assert resource["patient"] == PATIENT
        assert resource["code"]["coding"][0]["code"] == "91935009"
        assert resource["verificationStatus"]["coding"][0]["code"] == "unconfirmed"
        assert resource["clinicalStatus"]["coding"][0]["code"] == "active"
        assert resource["reaction"][0]["severity"] == "moderate"
    elif kind in ("condition", "symptom"):
        assert resource["recorder"] == PATIENT and resource["asserter"] == PATIENT
        category = resource["category"][0]["coding"][0]["code"]
        assert category == ("problem-list-item" if kind == "condition" else "health-concern")
        if kind == "condition":
            assert resource["clinicalStatus"]["coding"][0]["code"] == "resolved"
            assert resource["abatementDateTime"] == "2012-01-01"
        else:
            assert resource["severity"]["coding"][0]["code"] == "24484000"
    elif kind == "immunization":
        assert resource["primarySource"] is False and resource["patient"] == PATIENT
        assert resource["vaccineCode"]["coding"][0] == {
            "system": "http://hl7.org/fhir/sid/cvx",
            "code": "140",
            "display": "Influenza, seasonal, injectable, preservative free",
        }
        assert resource["occurrenceDateTime"] == "2025-10-01"
    else:
        assert resource["author"] == [PATIENT]
        assert resource["type"]["coding"][0]["code"] == "51855-5"


def test_free_text_names_have_no_code() -> None:
    assert shapes.concept(find_concept(MEDICATIONS, "Grandma's tea"), "Grandma's tea") == {
        "text": "Grandma's tea"
    }


@pytest.mark.parametrize("kind", ["medication", "allergy", "condition", "immunization", "note"])
def test_coded_entries_delete_and_undo(session: Session, kind: str) -> None:
    account = f.make_account(session)
    record = service.add(session, account, lambda p, rid, ident: build(kind, p) | {"id": rid})
    service.delete(session, account, record.id)
    assert record.status == "entered-in-error"
    shapes.check(record.raw)  # still valid FHIR (e.g. no clinicalStatus when entered-in-error)
    service.restore(session, account, record.id)
    assert record.status != "entered-in-error"
    assert [r.action for r in service.history(session, account, record.id)] == [
        "restored",
        "deleted",
        "created",
    ]
