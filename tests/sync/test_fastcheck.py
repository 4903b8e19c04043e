"""The quick check says "accepted" only where fhirclient's strict models accept.

Held to fhirclient's verdict on every resource of the shipped bundles (and of the shared
Synthea bundles when they are there), and on broken variants of one resource of each type:
every element removed, replaced by a value of each other JSON kind, wrapped in or taken out
of a list, given an unknown sibling, its `_element` key set; dates made impossible;
contained resources of the wrong kind.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portal.sync import fastcheck
from tests.conftest import SHARED_FHIR

DATA = Path(__file__).resolve().parents[2] / "portal" / "sandbox" / "data"
SHARED = SHARED_FHIR
REPLACEMENTS: tuple[Any, ...] = (
    None,
    42,
    1.5,
    True,
    "x",
    "",
    [],
    {},
    {"zzUnknown": 1},
    ["x"],
    [{}],
)
DATES = ("2020-13-01", "2021-02-29", "2020-01-01T25:00:00Z", "2020-01-01T10:00:00", "20200101")


def fhirclient_accepts(resource: Any) -> bool:
    try:
        fastcheck.model(resource["resourceType"])(resource)
    except Exception:
        return False
    return True


def shipped_resources() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(DATA.glob("*.json.gz")):
        with gzip.open(path, "rt") as fh:
            out += [e["resource"] for e in json.load(fh)["entry"]]
    return out


def one_of_each_type() -> list[dict[str, Any]]:
    """The richest resource (longest JSON) of each type in the shipped bundles."""
    best: dict[str, tuple[int, dict[str, Any]]] = {}
    for resource in shipped_resources():
        size = len(json.dumps(resource))
        if size < 20_000 and size > best.get(resource["resourceType"], (0, {}))[0]:
            best[resource["resourceType"]] = (size, resource)
    return [r for _, r in best.values()]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside `value` (keys and list positions)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value[:2]):
            yield (*prefix, i)
            yield from paths(item, (*prefix, i))


def at(resource: dict[str, Any], path: tuple[Any, ...]) -> tuple[Any, Any]:
    """(parent, key) of a path."""
    parent: Any = resource
    for step in path[:-1]:
        parent = parent[step]
    return parent, path[-1]


def variants(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for path in list(paths(resource)):
        if path == ("resourceType",):
            continue
        original = at(resource, path)[0][path[-1]]
        changes: list[Any] = [*REPLACEMENTS, [original]]
        if isinstance(original, list) and original:
            changes.append(original[0])
        if isinstance(original, str) and original[:2] in ("19", "20"):
            changes += DATES
        if path[-1] == "resourceType":
            changes += ["Patient", "Observation", "ObservationComponent", "Nonsense"]
        for change in changes:
            variant = copy.deepcopy(resource)
            parent, key = at(variant, path)
            parent[key] = change
            yield variant
        variant = copy.deepcopy(resource)
        parent, key = at(variant, path)
        if isinstance(parent, dict):
            del parent[key]
            yield variant
            for extra in ({"zzUnknown": 1}, {f"_{key}": None}, {f"_{key}": {}}, {"_zz": {}}):
                variant = copy.deepcopy(resource)
                at(variant, path)[0].update(extra)
                yield variant
        else:
            del parent[key]
            yield variant
    contained = copy.deepcopy(resource)
    contained["contained"] = [{"resourceType": "ObservationComponent", "code": {"text": "x"}}]
    yield contained
    contained = copy.deepcopy(resource)
    contained["contained"] = [{"resourceType": "Medication", "id": "m", "status": 5}]
    yield contained
    contained = copy.deepcopy(resource)
    contained["contained"] = [{"resourceType": "Medication", "id": "m", "status": "active"}]
    yield contained


def test_every_shipped_resource_is_judged_as_fhirclient_judges_it() -> None:
    resources = shipped_resources()
    assert len(resources) > 3000
    for resource in resources:
        assert fastcheck.accepts(resource) == fhirclient_accepts(resource), resource["id"]


@pytest.mark.shared_data
def test_every_shared_resource_is_judged_as_fhirclient_judges_it() -> None:
    files = sorted(SHARED.glob("*_*.json"))
    if not files:
        message = f"shared Synthea bundles not found in {SHARED} (set PORTAL_SHARED_FHIR)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    count = 0
    for path in files:
        for entry in json.loads(path.read_text())["entry"]:
            resource = entry["resource"]
            assert fastcheck.accepts(resource) == fhirclient_accepts(resource), path.name
            count += 1
    assert count > 5000


def test_no_broken_variant_is_accepted_that_fhirclient_refuses() -> None:
    accepted = refused = 0
    for resource in one_of_each_type():
        for variant in variants(resource):
            if fastcheck.accepts(variant):
                assert fhirclient_accepts(variant), json.dumps(variant)[:2000]
                accepted += 1
            else:
                refused += 1
    # Both verdicts are exercised: harmless changes (an empty string id) pass, most don't.
    assert accepted > 500
    assert refused > 5000


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Observation", "status": "final"},  # code is required
        {"resourceType": "Observation", "status": "final", "code": {}, "zz": 1},
        {"resourceType": "Observation", "status": "final", "code": {}, "_status": None},
        {"resourceType": "Observation", "status": "final", "code": {}, "category": {}},
        {"resourceType": "Observation", "status": "final", "code": [{}]},
        {"resourceType": "Observation", "status": 1, "code": {}},
        {"resourceType": "Observation", "status": "final", "code": {}, "issued": "2020-02-30"},
        {"resourceType": "Observation", "status": "final", "code": {}, "valueQuantity": []},
        {"resourceType": "Patient", "contained": [{"resourceType": "HumanName"}]},
        {"resourceType": "Patient", "name": [{"given": "Ann"}]},
        {"resourceType": "MedicationRequest", "status": "active", "intent": "plan"},
        {"resourceType": "Nonsense", "id": "a", "code": "x"},
    ],
)
def test_broken_resources_are_left_to_fhirclient(resource: dict[str, Any]) -> None:
    assert not fastcheck.accepts(resource)
    assert not fhirclient_accepts(resource)


@pytest.mark.parametrize("value", [[], "Observation", None, {}, {"resourceType": 5}])
def test_what_is_not_a_resource_is_not_accepted(value: Any) -> None:
    assert not fastcheck.accepts(value)


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Observation", "status": "final", "code": {}, "valueInteger": 1.5},
        {"resourceType": "Observation", "status": "final", "code": {}, "effective": "x"},
        {"resourceType": "Observation", "status": "final", "code": {}, "_status": {"id": "a"}},
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {},
            "contained": [{"resourceType": "Medication", "id": "m"}],
            "effectiveDateTime": "2020-02",
        },
        {"resourceType": "Patient", "birthDate": "1970", "deceasedBoolean": False},
        {"resourceType": "Patient", "_birthDate": {}},  # an extension-only primitive
        {"resourceType": "Patient", "contained": [{}]},  # a plain Resource
    ],
)
def test_what_fhirclient_takes_is_taken_here_too(resource: dict[str, Any]) -> None:
    assert fhirclient_accepts(resource)
    assert fastcheck.accepts(resource)
