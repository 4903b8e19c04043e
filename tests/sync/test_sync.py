"""Background sync against the live sandbox: completeness, paging, faults, re-sync, claims."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from flask import Flask

from portal import jobs
from portal.db import transaction, utcnow
from portal.models import EhrConnection, EhrServer, FhirRecord, QuarantinedResource, SyncRun
from portal.sandbox.fhir.store import add_resource
from portal.sandbox.models import FhirHistory, FhirResource
from portal.smart import scopes
from portal.smart.errors import NotConnected, ReconnectNeeded
from portal.smart.settings import SmartSettings
from portal.sync.engine import SyncSettings, enqueue, latest_run, run
from portal.sync.worker import run_pending
from tests.live import (
    Browser,
    CuttingProxy,
    LiveEhr,
    Recorder,
    connected,
    count_by_type,
    json_response,
    rows,
    statements,
)
from tests.plain import assert_plain

# The US Core types the portal reads by patient, as the bundle counts them.
PATIENT_TYPES = {
    "Patient", "AllergyIntolerance", "Condition", "MedicationRequest", "Immunization",
    "Observation", "DiagnosticReport", "DocumentReference", "Encounter", "Procedure",
    "CarePlan", "Goal", "CareTeam", "Coverage",
}  # fmt: skip


@pytest.fixture
def sync(smart: SmartSettings) -> SyncSettings:
    return SyncSettings(smart=smart, page_size=50, heartbeat_seconds=0.2)


@pytest.fixture
def conn(factory, ehr: EhrServer, browser: Browser, smart: SmartSettings, live_ehr: LiveEhr) -> int:
    return connected(factory, ehr, browser, live_ehr, smart)


@pytest.fixture
def faults(live_ehr: LiveEhr):
    yield live_ehr
    live_ehr.clear_faults()


def sync_once(factory, conn: int, sync: SyncSettings, owner: str = "test-worker") -> SyncRun:
    with transaction(factory) as session:
        run_id = enqueue(session, conn).id
    run(factory, run_id, owner, settings=sync)
    with factory() as session:
        found = session.get(SyncRun, run_id)
        assert found is not None
        return found


def expected_counts(live: LiveEhr, name: str = "christin_stiedemann") -> dict[str, int]:
    counts = live.patients[name].counts
    return {t: n for t, n in counts.items() if t in PATIENT_TYPES}


@contextmanager
def added_to_ehr(live: LiveEhr, resource: dict[str, Any]) -> Iterator[None]:
    """A resource in the live EHR for the length of a test (the EHR is shared by the run)."""
    with live.app.app_context(), live.sandbox_session() as session:
        add_resource(session, resource)
    try:
        yield
    finally:
        with live.sandbox_session() as session:
            row = session.scalar(
                sa.select(FhirResource).where(FhirResource.resource_id == resource["id"])
            )
            session.delete(row)
            session.execute(sa.delete(FhirHistory).where(FhirHistory.resource_id == resource["id"]))


def observation(patient: str, rid: str, category: str | None) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]
        },
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-01-01T10:00:00Z",
        "valueQuantity": {"value": 72, "unit": "/min"},
    }
    if category:
        system = "http://terminology.hl7.org/CodeSystem/observation-category"
        obs["category"] = [{"coding": [{"system": system, "code": category}]}]
    return obs


def fhir_searches(recorder: Recorder) -> list[httpx.Request]:
    return [r for r in recorder.requests if "/fhir/" in r.url.path and r.method == "GET"]


def test_sync_stores_every_resource_of_the_patient(
    factory, conn: int, sync: SyncSettings, live_ehr: LiveEhr
) -> None:
    done = sync_once(factory, conn, sync)
    assert done.status == "complete", done.error
    assert done.error is None and done.finished_at and done.lease_owner == "test-worker"
    counts = count_by_type(factory, conn)
    assert {t: n for t, n in counts.items() if t in PATIENT_TYPES} == expected_counts(live_ehr)
    # Referenced clinicians and organizations are fetched too (shared, so at most the bundle's).
    bundle = live_ehr.patients["christin_stiedemann"].counts
    for rtype in ("Practitioner", "Organization"):
        assert 1 <= counts.get(rtype, 0) <= bundle[rtype]
    assert set(counts) <= set(scopes.resource_types())  # only what the portal uses
    progress = done.progress
    assert all(p["done"] and p["error"] is None for p in progress.values())
    assert progress["labs"]["fetched"] > 0 and progress["vitals"]["fetched"] > 0
    assert progress["patient"]["fetched"] == 1
    with factory() as session:
        connection = session.get(EhrConnection, conn)
        assert (
            connection
            and connection.last_synced_at
            and connection.last_synced_at >= done.started_at
        )
        record = session.scalar(
            sa.select(FhirRecord).where(FhirRecord.resource_type == "Observation").limit(1)
        )
        assert record is not None
        assert record.raw["resourceType"] == "Observation"  # raw JSON as received
        assert record.last_updated and record.fetched_at and record.version_id == "1"
        assert record.raw["meta"]["lastUpdated"].startswith(
            record.last_updated.strftime("%Y-%m-%dT%H:%M")
        )


def test_every_page_is_followed(
    factory, conn: int, smart: SmartSettings, live_ehr: LiveEhr, recorder: Recorder
) -> None:
    done = sync_once(factory, conn, SyncSettings(smart=smart, page_size=7, max_connections=3))
    assert done.status == "complete"
    counts = count_by_type(factory, conn)
    assert {t: n for t, n in counts.items() if t in PATIENT_TYPES} == expected_counts(live_ehr)
    paged = [r for r in fhir_searches(recorder) if "_cursor" in r.url.query.decode()]
    # vital signs 50, labs 38, surveys 10, visits 28, immunizations 11, procedures 10:
    # 7 + 5 + 1 + 3 + 1 + 1 next pages at 7 per page
    assert len(paged) >= 18


def test_pages_are_stored_together_and_each_write_bumps_the_data_version_once(
    factory, conn: int, smart: SmartSettings, live_ehr: LiveEhr, recorder: Recorder
) -> None:
    # No writes by the clock: only when a section completes, and at the end.
    slow = SyncSettings(
        smart=smart, page_size=7, max_connections=3, heartbeat_seconds=30, store_seconds=30
    )
    with statements(factory) as seen:
        done = sync_once(factory, conn, slow)
    stored = sum(s.sql.startswith("INSERT INTO fhir_record") for s in seen)
    progress = sum(s.sql.startswith("UPDATE sync_run") and "progress" in s.sql for s in seen)
    assert done.status == "complete"
    pages = len(fhir_searches(recorder))
    assert 1 <= stored < pages / 2  # several pages per transaction
    assert progress <= len(done.progress) + 2  # sections, the end, the finish
    with factory() as session:
        connection = session.get(EhrConnection, conn)
        assert connection is not None and connection.data_version == stored
    counts = count_by_type(factory, conn)
    assert {t: n for t, n in counts.items() if t in PATIENT_TYPES} == expected_counts(live_ehr)


def test_records_are_stored_once_enough_wait_leaving_little_for_the_end(
    factory, conn: int, smart: SmartSettings, live_ehr: LiveEhr
) -> None:
    # Nothing by the clock or by sections: only by the number of records waiting, and the end.
    batched = SyncSettings(
        smart=smart,
        page_size=7,
        heartbeat_seconds=30,
        store_seconds=30,
        section_seconds=30,
        store_rows=20,
    )
    with statements(factory) as seen:
        done = sync_once(factory, conn, batched)
    sizes = [s.rows for s in seen if s.sql.startswith("INSERT INTO fhir_record")]
    assert done.status == "complete"
    assert len(sizes) >= 3
    assert all(size >= 20 for size in sizes[:-1])
    assert sum(sizes) == sum(count_by_type(factory, conn).values())


@pytest.mark.parametrize("fault", ["rate_limit", "unavailable"])
def test_retry_after_is_honoured_and_the_sync_completes(
    fault: str,
    factory,
    conn: int,
    sync: SyncSettings,
    faults: LiveEhr,
    sleeps: list[float],
    live_ehr: LiveEhr,
) -> None:
    faults.set_fault(fault, 2, remaining=3)
    done = sync_once(factory, conn, sync)
    assert done.status == "complete", done.error
    assert sleeps.count(2.0) == 3
    counts = count_by_type(factory, conn)
    assert {t: n for t, n in counts.items() if t in PATIENT_TYPES} == expected_counts(live_ehr)


def test_ehr_that_keeps_refusing_leaves_the_run_incomplete(
    factory, conn: int, sync: SyncSettings, faults: LiveEhr, sleeps: list[float]
) -> None:
    faults.set_fault("unavailable", 1)
    done = sync_once(factory, conn, sync)
    assert done.status in ("failed", "incomplete")
    assert done.error and "too busy" in done.error
    assert_plain(done.error)
    assert max(sleeps) <= sync.smart.max_wait


def test_malformed_resource_is_quarantined_and_the_rest_stored(
    factory, conn: int, sync: SyncSettings, faults: LiveEhr, live_ehr: LiveEhr
) -> None:
    faults.set_fault("malformed_resource", remaining=1)
    done = sync_once(factory, conn, sync)
    assert done.status == "complete"
    ((bad,),) = rows(factory, sa.select(QuarantinedResource))
    assert bad.reason.startswith("not valid FHIR R4")
    assert bad.sync_run_id == done.id and bad.raw["id"].startswith("malformed-")
    assert sum(p["quarantined"] for p in done.progress.values()) >= 1
    counts = count_by_type(factory, conn)
    assert {t: n for t, n in counts.items() if t in PATIENT_TYPES} == expected_counts(live_ehr)


def test_looping_next_link_is_refused_and_the_run_incomplete(
    factory, conn: int, sync: SyncSettings, faults: LiveEhr
) -> None:
    faults.set_fault("looping_next", remaining=1)
    done = sync_once(factory, conn, sync)
    assert done.status == "incomplete"
    assert done.error and "repeats a page" in done.error
    assert_plain(done.error)
    assert any(p["error"] for p in done.progress.values())
    with factory() as session:
        connection = session.get(EhrConnection, conn)
        assert connection and connection.last_synced_at is None  # never shown as complete


def test_next_link_to_a_foreign_host_is_refused(
    factory, conn: int, sync: SyncSettings, recorder: Recorder
) -> None:
    def rewrite(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path.endswith("/Encounter") and response.status_code == 200:
            body = response.json()
            body["link"] = [{"relation": "next", "url": "https://evil.example/fhir/Encounter?p=2"}]
            return json_response(response, body)
        return response

    recorder.rewrite = rewrite
    done = sync_once(factory, conn, sync)
    assert done.status == "incomplete"
    assert done.error and "visits" in done.error and "outside" in done.error
    assert_plain(done.error)
    assert all(r.url.host == "127.0.0.1" for r in recorder.requests)


def test_ehr_down_keeps_what_was_synced_before(
    factory, conn: int, sync: SyncSettings, sleeps: list[float]
) -> None:
    assert sync_once(factory, conn, sync).status == "complete"
    before = count_by_type(factory, conn)
    with transaction(factory) as session:  # the EHR moves away: nothing answers there
        session.execute(sa.update(EhrServer).values(fhir_base="http://127.0.0.1:9/fhir"))
    done = sync_once(factory, conn, sync)
    assert done.status == "failed"
    assert done.error and "could not be reached" in done.error
    assert_plain(done.error)
    assert count_by_type(factory, conn) == before
    with factory() as session:
        connection = session.get(EhrConnection, conn)
        assert connection and connection.last_synced_at  # the age of what is shown


def test_only_granted_types_are_fetched(
    factory,
    ehr: EhrServer,
    browser: Browser,
    smart: SmartSettings,
    live_ehr: LiveEhr,
    recorder: Recorder,
    sync: SyncSettings,
) -> None:
    conn = connected(
        factory,
        ehr,
        browser,
        live_ehr,
        smart,
        untick=("patient/Immunization.rs", "patient/Condition.rs"),
    )
    with factory() as session:
        granted = session.get(EhrConnection, conn).granted_scope.split()  # type: ignore[union-attr]
    assert "patient/Immunization.rs" not in granted and "patient/Condition.rs" not in granted
    done = sync_once(factory, conn, sync)
    assert done.status == "complete"
    counts = count_by_type(factory, conn)
    assert "Immunization" not in counts and "Condition" not in counts
    assert counts["Observation"] == expected_counts(live_ehr)["Observation"]
    paths = {r.url.path.rsplit("/", 1)[-1] for r in fhir_searches(recorder)}
    assert not {"Immunization", "Condition"} & paths
    assert "immunizations" not in done.progress and "problems" not in done.progress


def test_category_restricted_grant_fetches_only_that_category(
    factory, conn: int, sync: SyncSettings, recorder: Recorder
) -> None:
    lab = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    with transaction(factory) as session:
        session.execute(
            sa.update(EhrConnection).values(granted_scope=f"openid patient/Patient.rs {lab}")
        )
    done = sync_once(factory, conn, sync)
    assert done.status == "complete"
    categories = Counter(c for (c,) in rows(factory, sa.select(FhirRecord.category)))
    assert set(categories) == {"labs", "patient"}
    assert set(done.progress) == {"labs", "patient"}


def test_resync_fetches_only_what_changed(
    factory, conn: int, sync: SyncSettings, live_ehr: LiveEhr, recorder: Recorder
) -> None:
    first = sync_once(factory, conn, sync)
    assert first.status == "complete"
    total = sum(count_by_type(factory, conn).values())
    new_obs = observation(
        live_ehr.patient("christin_stiedemann"), "new-after-first-sync", "vital-signs"
    )
    recorder.requests.clear()
    with added_to_ehr(live_ehr, new_obs):
        second = sync_once(factory, conn, sync)
    assert second.status == "complete"
    assert second.since == first.started_at
    assert sum(count_by_type(factory, conn).values()) == total + 1
    assert second.progress["vitals"]["fetched"] == 1
    fetched = sum(p["fetched"] for p in second.progress.values())
    assert fetched - second.progress["patient"]["fetched"] == 1  # plus the Patient read by id
    for request in fhir_searches(recorder):
        if "/Patient/" not in request.url.path:
            assert "_lastUpdated=gt" in request.url.query.decode()


@pytest.mark.parametrize("category", [None, "therapy", "vital-sign"])
def test_observations_outside_the_category_searches_are_fetched_too(
    category: str | None,
    factory,
    conn: int,
    sync: SyncSettings,
    live_ehr: LiveEhr,
    recorder: Recorder,
) -> None:
    odd = observation(live_ehr.patient("christin_stiedemann"), "odd-category", category)
    with added_to_ehr(live_ehr, odd):
        done = sync_once(factory, conn, sync)
    assert done.status == "complete"
    counts = count_by_type(factory, conn)
    assert counts["Observation"] == expected_counts(live_ehr)["Observation"] + 1
    assert done.progress["observations"]["fetched"] == 1  # only the one the others missed
    ((stored_category,),) = rows(
        factory, sa.select(FhirRecord.category).where(FhirRecord.resource_id == "odd-category")
    )
    assert stored_category == "observations"


def test_no_remainder_search_when_the_categories_found_everything(
    factory, conn: int, sync: SyncSettings, recorder: Recorder
) -> None:
    assert sync_once(factory, conn, sync).status == "complete"
    observation_searches = [
        r.url.query.decode() for r in fhir_searches(recorder) if r.url.path.endswith("/Observation")
    ]
    assert all("category=" in q or "_summary=count" in q for q in observation_searches)


def test_a_401_during_sync_refreshes_once_and_continues(
    factory, conn: int, sync: SyncSettings, smart: SmartSettings, recorder: Recorder
) -> None:
    with transaction(factory) as session:  # a token the EHR does not know, not yet expired
        session.execute(
            sa.update(EhrConnection).values(access_token_enc=smart.cipher.encrypt("bogus"))
        )
    done = sync_once(factory, conn, sync)
    assert done.status == "complete"
    refreshes = [r for r in recorder.to("/auth/token") if b"refresh_token" in r.content]
    assert len(refreshes) == 1


def test_two_workers_racing_for_one_run_run_it_once(
    factory, conn: int, sync: SyncSettings, recorder: Recorder
) -> None:
    with transaction(factory) as session:
        run_id = enqueue(session, conn).id
    barrier = threading.Barrier(2)
    results: dict[str, str | None] = {}

    def worker(owner: str) -> None:
        barrier.wait()
        results[owner] = run(factory, run_id, owner, settings=sync)

    threads = [threading.Thread(target=worker, args=(f"worker-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values(), key=str) == [None, "complete"]
    winner = next(o for o, r in results.items() if r == "complete")
    with factory() as session:
        found = session.get(SyncRun, run_id)
        assert found and found.lease_owner == winner
    patient_reads = [r for r in fhir_searches(recorder) if "/Patient/" in r.url.path]
    assert len(patient_reads) == 1  # the record was fetched once


@pytest.mark.parametrize("when", ["while fetching", "with the end"])
def test_records_that_cannot_be_stored_fail_the_run(
    when: str, factory, conn: int, sync: SyncSettings, monkeypatch
) -> None:
    """A write of records that fails, while fetching or with the run's end, fails the run in
    plain words; the connection keeps its last sync time."""
    from portal.sync import engine

    ended = threading.Event()
    failed_after_the_end: list[bool] = []
    real_conclude = engine._Runner._conclude

    def conclude(self):
        ended.set()
        return real_conclude(self)

    def upsert(session, rows):
        if not rows:
            return 0
        failed_after_the_end.append(ended.is_set())
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk full"))

    monkeypatch.setattr(engine, "upsert_records", upsert)
    monkeypatch.setattr(engine._Runner, "_conclude", conclude)
    if when == "with the end":  # nothing written by the clock: all of it with the end
        sync = SyncSettings(
            smart=sync.smart,
            page_size=50,
            store_seconds=30,
            section_seconds=30,
            heartbeat_seconds=30,  # the heartbeat writes too: none within the run
            store_rows=10**6,
        )
    done = sync_once(factory, conn, sync)
    assert failed_after_the_end == [when == "with the end"]
    assert done.status == "failed"
    assert done.error == engine.STORE_FAILED
    with factory() as session:
        connection = session.get(EhrConnection, conn)
        assert connection is not None and connection.last_synced_at is None


def test_a_worker_that_lost_its_run_stores_nothing_at_the_end(
    factory, conn: int, sync: SyncSettings, monkeypatch
) -> None:
    from portal.sync import engine

    real_conclude = engine._Runner._conclude

    def conclude(self):  # another worker takes the run over just before this one ends
        with transaction(factory) as session:
            session.execute(sa.update(SyncRun).values(lease_owner="other-worker"))
        return real_conclude(self)

    monkeypatch.setattr(engine._Runner, "_conclude", conclude)
    slow = SyncSettings(
        smart=sync.smart,
        page_size=50,
        store_seconds=30,
        section_seconds=30,
        heartbeat_seconds=30,  # the heartbeat writes too: none within the run
        store_rows=10**6,
    )
    done = sync_once(factory, conn, slow)
    assert done.status == "running" and done.lease_owner == "other-worker"
    assert count_by_type(factory, conn) == {}  # everything was left for the end


def test_enqueue_does_not_start_a_second_run(factory, conn: int, sync: SyncSettings) -> None:
    with transaction(factory) as session:
        first = enqueue(session, conn)
        assert enqueue(session, conn).id == first.id
    with transaction(factory) as session:
        assert enqueue(session, conn).id == first.id
    run(factory, first.id, "w", settings=sync)
    assert run(factory, first.id, "late", settings=sync) is None  # finished runs are not rerun
    with transaction(factory) as session:
        again = enqueue(session, conn)
        assert again.id != first.id and again.status == "queued"
        assert latest_run(session, conn).id == again.id  # type: ignore[union-attr]


def test_abandoned_run_is_picked_up_by_the_sweep(factory, conn: int, sync: SyncSettings) -> None:
    with transaction(factory) as session:
        run_id = enqueue(session, conn).id
        session.flush()
        session.execute(
            sa.update(SyncRun)
            .where(SyncRun.id == run_id)
            .values(
                status="running",
                lease_owner="dead-worker",
                heartbeat_at=utcnow() - timedelta(minutes=5),
            )
        )
    assert run_pending(factory, sync) == {run_id: "complete"}
    assert run_pending(factory, sync) == {}


@pytest.mark.parametrize("status", ["reconnect_needed", "disconnected"])
def test_a_run_whose_connection_stopped_working_meanwhile_fails_in_words(
    status: str, factory, conn: int, sync: SyncSettings, recorder: Recorder
) -> None:
    with transaction(factory) as session:
        run_id = enqueue(session, conn).id
        session.execute(sa.update(EhrConnection).values(status=status))
    asked_before = len(fhir_searches(recorder))
    assert run(factory, run_id, "w", settings=sync) == "failed"
    with factory() as session:
        found = session.get(SyncRun, run_id)
        assert found is not None and found.status == "failed"
        expected = ReconnectNeeded if status == "reconnect_needed" else NotConnected
        assert found.error == expected.public_message
    assert len(fhir_searches(recorder)) == asked_before  # nothing was asked of the EHR


def test_reconnect_needed_connection_is_not_synced(factory, conn: int) -> None:
    with transaction(factory) as session:
        session.execute(sa.update(EhrConnection).values(status="reconnect_needed"))
    with transaction(factory) as session, pytest.raises(ReconnectNeeded):
        enqueue(session, conn)


def test_the_sync_job_runs_a_queued_run_and_running_it_again_changes_nothing(
    app: Flask, factory, conn: int, smart: SmartSettings, live_ehr: LiveEhr
) -> None:
    """A job delivered twice (a worker killed after the run ended, before it said so): the
    second finds the run ended and neither fetches nor stores anything again."""
    app.extensions["smart"] = smart
    app.config["SYNC_PAGE_SIZE"] = 25
    with transaction(factory) as session:
        run_id = enqueue(session, conn).id
    jobs.run_now(app, "sync.run", run_id)
    with factory() as session:
        found = session.get(SyncRun, run_id)
        assert found and found.status == "complete"
        ended, stored = (
            found.finished_at,
            session.scalar(
                sa.select(sa.func.max(FhirRecord.fetched_at)).where(
                    FhirRecord.connection_id == conn
                )
            ),
        )
    counts = count_by_type(factory, conn)
    assert {t: n for t, n in counts.items() if t in PATIENT_TYPES} == expected_counts(live_ehr)
    jobs.run_now(app, "sync.run", run_id)
    with factory() as session:
        again = session.get(SyncRun, run_id)
        assert again and again.status == "complete" and again.finished_at == ended
        assert stored == session.scalar(
            sa.select(sa.func.max(FhirRecord.fetched_at)).where(FhirRecord.connection_id == conn)
        )
    assert count_by_type(factory, conn) == counts


# --- connections reset in the middle of a page ---------------------------------------------------


@contextmanager
def behind_cutting_proxy(factory, live: LiveEhr, cut, times: int | None = None):
    """The connection's EHR reached through a proxy that resets connections mid-page."""
    proxy = CuttingProxy(live, cut, times)
    with transaction(factory) as session:
        session.execute(sa.update(EhrServer).values(fhir_base=proxy.fhir_base))
    try:
        yield proxy
    finally:
        proxy.close()


def next_page_of_visits(target: str) -> bool:
    return target.startswith("/fhir/Encounter?") and "_cursor=" in target


@pytest.mark.parametrize(
    ("cut", "section"),
    [
        (next_page_of_visits, "visits"),
        (lambda t: "category=" in t and "laboratory" in t, "labs"),
        (lambda t: "_summary=count" in t, "observations"),
        (lambda t: t.startswith("/fhir/Practitioner"), "directory"),
    ],
    ids=["a next page", "a first page", "the count of observations", "referenced clinicians"],
)
def test_a_search_whose_every_attempt_is_cut_mid_page_fails_its_section_in_words(
    cut, section: str, factory, conn: int, smart: SmartSettings, live_ehr: LiveEhr
) -> None:
    sync = SyncSettings(smart=smart, page_size=7, heartbeat_seconds=0.2)
    with behind_cutting_proxy(factory, live_ehr, cut) as proxy:
        done = sync_once(factory, conn, sync)
    # every request cut was asked again until the last attempt, which failed too
    assert set(Counter(proxy.cuts).values()) == {smart.max_attempts}
    assert done.status in ("incomplete", "failed")
    assert done.progress[section]["error"], done.progress
    assert_plain(done.progress[section]["error"])
    assert_plain(done.error)
    assert done.error and "could not be reached, or stopped answering" in done.error
    with factory() as session:
        connection = session.get(EhrConnection, conn)
        assert connection and connection.last_synced_at is None  # never shown as up to date


def test_a_next_page_cut_on_every_attempt_keeps_the_pages_before_it(
    factory, conn: int, smart: SmartSettings, live_ehr: LiveEhr
) -> None:
    sync = SyncSettings(smart=smart, page_size=7, heartbeat_seconds=0.2)
    with behind_cutting_proxy(factory, live_ehr, next_page_of_visits) as proxy:
        done = sync_once(factory, conn, sync)
    assert done.status == "incomplete"
    assert Counter(proxy.cuts) == {proxy.cuts[0]: smart.max_attempts}  # one page, retried
    assert count_by_type(factory, conn)["Encounter"] == 7  # the first page is kept
    assert "what arrived is kept" in (done.error or "") and "visits" in (done.error or "")


def test_a_page_cut_fewer_times_than_the_retries_still_arrives_whole(
    factory, conn: int, smart: SmartSettings, live_ehr: LiveEhr
) -> None:
    sync = SyncSettings(smart=smart, page_size=7, heartbeat_seconds=0.2)
    times = smart.max_attempts - 1
    with behind_cutting_proxy(factory, live_ehr, next_page_of_visits, times) as proxy:
        done = sync_once(factory, conn, sync)
    assert len(proxy.cuts) == times
    assert done.status == "complete", done.error
    counts = count_by_type(factory, conn)
    assert {t: n for t, n in counts.items() if t in PATIENT_TYPES} == expected_counts(live_ehr)
