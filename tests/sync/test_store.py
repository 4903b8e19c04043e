"""A page checked in a validation process is what checking it here gives, ready to store."""

from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from portal.db import utcnow
from portal.sync import validation
from portal.sync.store import check_page, prepare_page, references, text_references

DATA = Path(__file__).resolve().parents[2] / "portal" / "sandbox" / "data"
BASE = "https://ehr.example/fhir"
TYPES = ("Practitioner", "Organization", "Medication", "Location", "Encounter")


def shipped(name: str) -> tuple[str, list[dict[str, Any]]]:
    """(patient id, resources) of a shipped bundle, its urn:uuid references made relative."""
    with gzip.open(DATA / f"{name}.json.gz", "rt") as fh:
        bundle = json.load(fh)
    types = {e["fullUrl"]: e["resource"]["resourceType"] for e in bundle["entry"]}
    text = json.dumps([e["resource"] for e in bundle["entry"]])
    for url, rtype in types.items():
        text = text.replace(f'"{url}"', f'"{rtype}/{url.removeprefix("urn:uuid:")}"')
    resources = json.loads(text)
    patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    return patient, resources


def tricky() -> list[dict[str, Any]]:
    return [
        {"resourceType": "Observation", "id": "a", "performer": [{"reference": "Practitioner/p1"}]},
        {"reference": f"{BASE}/Organization/o1", "x": {"reference": "Organization/o 2"}},
        {"note": 'say "reference": "Practitioner/fake" in text', "reference": "Medication/m1"},
        {'a"reference': "Practitioner/fake2", "reference": {"reference": "Location/l1"}},
        {"reference": "Practitioner/\u00e9", "y": [{"reference": "Encounter/e\\1"}]},
        {"reference": "https://elsewhere.example/fhir/Organization/o3", "z": "Organization/o4"},
    ]


@pytest.mark.parametrize("name", ["christin_stiedemann", "vito_feeney"])
def test_references_read_from_the_text_are_those_of_the_resource(name: str) -> None:
    _, resources = shipped(name)
    found = 0
    for resource in [*resources, *tricky()]:
        expected = references(resource, TYPES, BASE)
        assert text_references(json.dumps(resource), TYPES, BASE) == expected, resource
        found += len(expected)
    assert found > 50


def test_tricky_references() -> None:
    found = set().union(*(text_references(json.dumps(r), TYPES, BASE) for r in tricky()))
    assert found == {
        ("Practitioner", "p1"),
        ("Organization", "o1"),
        ("Medication", "m1"),
        ("Location", "l1"),
    }


def bad_page(patient: str) -> list[dict[str, Any]]:
    good = {"resourceType": "Observation", "id": "ok", "status": "final", "code": {"text": "x"}}
    return [
        {"resourceType": "Observation", "id": "m1", "code": 12345},  # not valid FHIR R4
        {**good, "id": "m2", "valueQuantity": {"value": "lots"}},
        {**good, "id": "m3", "unknownElement": True},
        {**good, "id": "m4", "subject": {"reference": "Patient/someone-else"}},
        {**good, "id": "has spaces"},
        {**good, "subject": {"reference": f"Patient/{patient}"}},
    ]


def unordered(row: dict[str, Any]) -> dict[str, Any]:
    """A quarantine row whose reason is compared without object addresses or error order
    (fhirclient lists some errors from a set, whose order varies between processes)."""
    reason = re.sub(r" object at 0x[0-9a-f]+", "", row["reason"])
    return {**row, "reason": sorted(reason.split())}


@pytest.mark.parametrize("processes", [0, 1])
def test_a_page_prepared_elsewhere_is_the_page_checked_here(processes: int) -> None:
    patient, resources = shipped("christin_stiedemann")
    page = [(r, "include") for r in resources] + [(r, "match") for r in bad_page(patient)]
    now = utcnow()
    args = (page, "Observation", patient, TYPES, BASE, 7, now)
    prepared = validation.result(
        validation.submit(processes, prepare_page, *args), prepare_page, *args
    )
    checked = check_page(
        page,
        connection_id=7,
        expected_type="Observation",
        patient_id=patient,
        fetched_at=now,
        referenced_types=TYPES,
        fhir_base=BASE,
    )
    assert prepared.references == checked.references and checked.references
    assert [unordered(q) for q in prepared.quarantined] == [
        unordered(q) for q in checked.quarantined
    ]
    assert [q["resource_id"] for q in checked.quarantined] == ["m1", "m2", "m3", "m4", "has spaces"]
    assert len(prepared.rows) == len(checked.rows) == len(resources) + 1
    for mine, theirs in zip(prepared.rows, checked.rows, strict=True):
        assert json.loads(mine.pop("raw_json")) == theirs.pop("raw")
        assert mine == theirs


def started(size: int, seconds: float) -> tuple[int, float]:
    """A job of the validation processes: when it started (the clock is the system's)."""
    start = time.monotonic()
    time.sleep(seconds)
    return size, start


def test_the_backlog_checks_small_pages_first() -> None:
    backlog = validation.Backlog(1)
    busy = backlog.submit(500, started, 500, 0.3)  # the process is busy with it...
    queued = [backlog.submit(size, started, size, 0.0) for size in (200, 3, 70)]  # ...meanwhile
    jobs = [f.result(timeout=30) for f in [busy, *queued]]
    assert [size for size, _ in sorted(jobs, key=lambda job: job[1])] == [500, 3, 70, 200]
    assert backlog.submit(0, started, 0, 0.0).done()  # nothing to check: no trip elsewhere
