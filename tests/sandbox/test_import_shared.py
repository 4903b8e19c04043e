"""Every shared Synthea bundle imports into one store and comes back whole through search.

The bundles live outside the repository (PORTAL_SHARED_FHIR, else ../shared/fhir/synthea).
Without them the module is skipped locally and fails on CI, where they must be present.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from functools import cache
from typing import Any

import httpx
import pytest
from flask import Flask

from portal.sandbox.fhir.registry import TYPES
from portal.sandbox.fhir.store import LoadResult, read_bundle_file
from tests.conftest import SHARED_FHIR
from tests.sandbox.conftest import BASE_URL
from tests.sandbox.tokens import bearer, fetch_all, mint_token, separate_sandbox

pytestmark = pytest.mark.shared_data

SHARED = SHARED_FHIR
MISSING = "<shared bundles missing>"
FILES = sorted(p.name for p in SHARED.glob("*.json") if p.name != "MANIFEST.json") or [MISSING]
COMPARTMENT_TYPES = sorted(t.name for t in TYPES.values() if t.compartment)
PAGE = 37  # small and odd, so most types need several pages


@cache
def bundle(name: str) -> dict[str, Any]:
    return read_bundle_file(SHARED / name)


def counts(name: str) -> Counter[str]:
    return Counter(e["resource"]["resourceType"] for e in bundle(name)["entry"])


def ids(name: str, rtype: str) -> list[str]:
    return [
        e["resource"]["id"] for e in bundle(name)["entry"] if e["resource"]["resourceType"] == rtype
    ]


@pytest.fixture(scope="module")
def shared_store(instance_dir) -> Iterator[tuple[Flask, dict[str, LoadResult]]]:
    if FILES == [MISSING]:
        message = f"shared Synthea bundles not found in {SHARED} (set PORTAL_SHARED_FHIR)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with separate_sandbox("shared", instance_dir, (bundle(f) for f in FILES)) as (app, results):
        yield app, dict(zip(FILES, results, strict=True))


@pytest.fixture(scope="module")
def client(shared_store) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.WSGITransport(app=shared_store[0]), base_url=BASE_URL) as c:
        yield c


def test_manifest_lists_every_bundle_with_its_counts(shared_store):
    manifest = json.loads((SHARED / "MANIFEST.json").read_text())
    assert sorted(f["file"] for f in manifest["files"]) == FILES
    assert len(FILES) == 22
    for entry in manifest["files"]:
        assert counts(entry["file"]) == Counter(entry["resources"]), entry["file"]


@pytest.mark.parametrize("name", FILES)
def test_import_reports_what_each_bundle_holds(shared_store, name):
    result = shared_store[1][name]
    assert result.counts == counts(name)
    assert result.patient_id == ids(name, "Patient")[0]


@pytest.mark.parametrize("name", FILES)
def test_every_compartment_type_comes_back_exactly_once(shared_store, client, name):
    app, results = shared_store
    patient = results[name].patient_id
    assert patient
    token = mint_token(app, patient, "patient/*.rs")
    for rtype in COMPARTMENT_TYPES:
        params: dict[str, Any] = {"_count": PAGE}
        if rtype != "Patient":
            params["patient"] = patient
        found, bundles = fetch_all(client, token, f"/fhir/{rtype}", params)
        got = [r["id"] for r in found]
        expected = ids(name, rtype)
        assert len(got) == len(set(got)), f"{rtype}: a resource came back twice"
        assert sorted(got) == sorted(expected), rtype
        assert {b["total"] for b in bundles} == {len(expected)}, rtype


@pytest.mark.parametrize("name", FILES)
def test_organizations_and_practitioners_are_readable(shared_store, client, name):
    app, results = shared_store
    token = mint_token(app, str(results[name].patient_id), "patient/*.rs")
    for rtype in ("Organization", "Practitioner"):
        for rid in ids(name, rtype):
            response = client.get(f"/fhir/{rtype}/{rid}", headers=bearer(token))
            assert response.status_code == 200, f"{rtype}/{rid}"
            assert response.json()["id"] == rid
