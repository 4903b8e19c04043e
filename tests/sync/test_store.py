"""Checking a fetched page: rows with their JSON, quarantine entries, references; the
thread that does it."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest

from portal.db import utcnow
from portal.smart.fhir import FHIR_ID
from portal.sync.checking import Checker
from portal.sync.store import encode, prepare_page, text_references

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


def references(resource: Any, types: tuple[str, ...], fhir_base: str = "") -> set[tuple[str, str]]:
    """What `text_references` must find, by walking the parsed resource."""
    found: set[tuple[str, str]] = set()
    stack = [resource]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            ref = value.get("reference")
            if isinstance(ref, str):
                if fhir_base and ref.startswith(fhir_base + "/"):
                    ref = ref[len(fhir_base) + 1 :]
                parts = ref.split("/")
                if len(parts) == 2 and parts[0] in types and FHIR_ID.match(parts[1]):
                    found.add((parts[0], parts[1]))
            stack.extend(v for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend(v for v in value if isinstance(v, dict | list))
    return found


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
        assert text_references(encode(resource), TYPES, BASE) == expected, resource
        found += len(expected)
    assert found > 50


def test_tricky_references() -> None:
    found = set().union(*(text_references(encode(r), TYPES, BASE) for r in tricky()))
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


def test_a_page_becomes_rows_with_its_json_and_quarantine_entries() -> None:
    patient, resources = shipped("christin_stiedemann")
    page = [(r, "include") for r in resources] + [(r, "match") for r in bad_page(patient)]
    now = utcnow()
    checked = prepare_page(page, "Observation", patient, TYPES, BASE, 7, now)
    assert [q["resource_id"] for q in checked.quarantined] == ["m1", "m2", "m3", "m4", "has spaces"]
    assert all(q["connection_id"] == 7 and q["fetched_at"] == now for q in checked.quarantined)
    assert len(checked.rows) == len(resources) + 1
    for row, resource in zip(checked.rows, [*resources, bad_page(patient)[-1]], strict=True):
        assert json.loads(row["raw_json"]) == resource  # as received
        assert (row["resource_type"], row["resource_id"]) == (
            resource["resourceType"],
            resource["id"],
        )
    expected = set().union(*(references(r, TYPES, BASE) for r in resources))
    assert checked.references == expected and expected


def test_json_beyond_what_orjson_writes_is_stored_whole() -> None:
    resource = {"resourceType": "Basic", "id": "b", "big": 2**70, "text": "caf\u00e9"}
    assert json.loads(encode(resource)) == resource
    assert encode({"reference": "Practitioner/p1"}) == '{"reference":"Practitioner/p1"}'


def started(size: int, seconds: float) -> tuple[int, float]:
    """A checking job: when it started."""
    start = time.monotonic()
    time.sleep(seconds)
    return size, start


def test_the_checker_checks_small_pages_first() -> None:
    checker = Checker("test-checker")
    try:
        busy = checker.submit(500, started, 500, 0.3)  # the thread is busy with it...
        while not busy.running():
            time.sleep(0.001)
        queued = [checker.submit(size, started, size, 0.0) for size in (200, 3, 70)]  # meanwhile
        jobs = [f.result(timeout=30) for f in [busy, *queued]]
    finally:
        checker.close()
    assert [size for size, _ in sorted(jobs, key=lambda job: job[1])] == [500, 3, 70, 200]


def test_the_checker_hands_errors_over_and_finishes_its_work_when_closed() -> None:
    checker = Checker("test-checker")
    failing = checker.submit(1, json.loads, "{not json")
    late = [checker.submit(1, started, 1, 0.05) for _ in range(3)]
    checker.close()
    assert isinstance(failing.exception(), ValueError)
    assert all(f.done() and f.exception() is None for f in late)
    with pytest.raises(RuntimeError):
        checker.submit(1, started, 1, 0.0)
