"""The biggest shipped patient is fetched fast, with a fixed number of queries per page."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import event

from portal.sandbox.db import sdb
from portal.sandbox.fhir.registry import TYPES
from portal.sandbox.fhir.store import read_bundle_file
from tests.sandbox.conftest import BASE_URL, DATA
from tests.sandbox.tokens import bearer, fetch_all, mint_token, separate_sandbox

BIGGEST = "vito_feeney"  # 1244 resources


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    return read_bundle_file(DATA / f"{BIGGEST}.json.gz")


@pytest.fixture(scope="module")
def store(instance_dir, bundle) -> Iterator[tuple[Flask, str]]:
    with separate_sandbox("perf", instance_dir, [bundle]) as (app, (result,)):
        assert result.patient_id
        yield app, result.patient_id


@pytest.fixture
def client(store) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.WSGITransport(app=store[0]), base_url=BASE_URL) as c:
        yield c


@pytest.fixture(scope="module")
def token(store) -> str:
    app, patient = store
    return mint_token(app, patient, "patient/*.rs")


def test_whole_record_is_fetched_fast(client, token, bundle, store):
    expected = Counter(e["resource"]["resourceType"] for e in bundle["entry"])
    assert sum(expected.values()) == 1244
    compartment = [t.name for t in TYPES.values() if t.compartment]
    started = time.perf_counter()
    fetched: Counter[str] = Counter()
    for rtype in compartment:
        params = {"_count": 100} if rtype == "Patient" else {"patient": store[1], "_count": 100}
        resources, _ = fetch_all(client, token, f"/fhir/{rtype}", params)
        fetched[rtype] = len({r["id"] for r in resources})
    elapsed = time.perf_counter() - started
    assert +fetched == Counter({t: n for t, n in expected.items() if t in compartment})
    # Generous for slow CI machines; locally this takes well under a second.
    assert elapsed < 10, f"fetching {sum(fetched.values())} resources took {elapsed:.1f}s"


def count_statements(app: Flask, client: httpx.Client, url: str, token: str) -> int:
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = sdb.engine(app)
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert client.get(url, headers=bearer(token)).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return len(statements)


def test_queries_per_page_do_not_grow_with_the_page(client, token, store):
    app, patient = store
    small = count_statements(app, client, f"/fhir/Observation?patient={patient}&_count=5", token)
    large = count_statements(app, client, f"/fhir/Observation?patient={patient}&_count=900", token)
    assert small == large
    filtered = count_statements(
        app,
        client,
        f"/fhir/Observation?patient={patient}&category=laboratory&code=2339-0&date=ge2015"
        "&_count=900",
        token,
    )
    assert filtered == large
    # token, faults, count, page; the fault check runs in its own short transaction.
    assert large <= 6
