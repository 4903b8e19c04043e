"""What an EHR sends is bounded: pages per search, records per run, bytes per page, time per
run, nesting. Each limit ends the search (or the run) as incomplete in plain words and keeps
what arrived.

The EHR here is a fake transport that makes its pages as they are asked for, so a chain of
20,000 pages or a page of 50 MB costs only what the portal actually reads of it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from portal.db import transaction, utcnow
from portal.extensions import db
from portal.models import (
    Account,
    EhrConnection,
    EhrServer,
    FhirRecord,
    QuarantinedResource,
    SyncRun,
)
from portal.smart.crypto import TokenCipher
from portal.smart.settings import SmartSettings
from portal.sync.engine import SyncSettings, enqueue, run
from tests.plain import assert_plain

BASE = "https://riverside.example/fhir"
NAME = "Riverside General Hospital"
PATIENT = "p1"
MB = 1024 * 1024
# Patient, visits, lab results: enough to see one search end and the others go on.
SCOPE = (
    "patient/Patient.rs patient/Encounter.rs "
    "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
)
Handler = Callable[[httpx.Request, int], httpx.Response]  # (request, page number from 1)


def encounter(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": f"visit-{n}",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": f"Patient/{PATIENT}"},
    }


def lab(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"lab-{n}",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"text": "Glucose"},
        "subject": {"reference": f"Patient/{PATIENT}"},
    }


def page(rtype: str, n: int, resources: list[dict[str, Any]], last: int | None) -> httpx.Response:
    """Page `n` of a search of `rtype`, with a next link unless it is the `last`."""
    links = [{"relation": "self", "url": f"{BASE}/{rtype}?page={n}"}]
    if last is None or n < last:
        links.append({"relation": "next", "url": f"{BASE}/{rtype}?page={n + 1}"})
    body = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }
    return json_response(orjson.dumps(body))


def json_response(content: bytes | Iterator[bytes], **headers: str) -> httpx.Response:
    return httpx.Response(
        200, content=content, headers={"Content-Type": "application/fhir+json", **headers}
    )


class FakeEhr(httpx.BaseTransport):
    """Riverside's FHIR API: the Patient, and searches answered by handlers, page by page.

    Every request moves `now` on by `seconds_per_request` (the sync's clock in these tests).
    """

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.searches: dict[str, Handler] = {}
        self.now = 0.0
        self.seconds_per_request = 0.0
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            self.now += self.seconds_per_request
        assert request.headers["authorization"] == "Bearer riverside-token"
        path = request.url.path.removeprefix("/fhir/")
        if path == f"Patient/{PATIENT}":
            return json_response(orjson.dumps({"resourceType": "Patient", "id": PATIENT}))
        handler = self.searches.get(path)
        if handler is None:
            return page(path, 1, [], last=1)
        number = int(parse_qs(request.url.query.decode()).get("page", ["1"])[0])
        return handler(request, number)

    def to(self, rtype: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == f"/fhir/{rtype}"]


def chain(
    rtype: str, make: Callable[[int], dict[str, Any]], pages: int, per_page: int = 1
) -> Handler:
    """A search of `pages` pages of `per_page` resources each, made when asked for."""

    def handler(_request: httpx.Request, n: int) -> httpx.Response:
        first = (n - 1) * per_page
        return page(rtype, n, [make(first + i) for i in range(per_page)], last=pages)

    return handler


@pytest.fixture
def fake() -> FakeEhr:
    return FakeEhr()


@pytest.fixture
def smart(fake: FakeEhr) -> SmartSettings:
    return SmartSettings(
        cipher=TokenCipher([Fernet.generate_key()]), sleep=lambda _s: None, transport=fake
    )


@pytest.fixture
def factory(app: Flask) -> sessionmaker[Session]:
    return db.sessionmaker(app)


@pytest.fixture
def conn(factory: sessionmaker[Session], smart: SmartSettings) -> int:
    """A connection to Riverside with a token that lasts."""
    with transaction(factory) as session:
        account = Account(display_name="Test Patient")
        ehr = EhrServer(name=NAME, fhir_base=BASE, client_id="portal")
        session.add_all([account, ehr])
        session.flush()
        connection = EhrConnection(
            account_id=account.id,
            ehr_server_id=ehr.id,
            patient_id=PATIENT,
            status="active",
            granted_scope=SCOPE,
            access_token_enc=smart.cipher.encrypt("riverside-token"),
            token_expires_at=utcnow() + timedelta(hours=1),
        )
        session.add(connection)
        session.flush()
        return connection.id


def sync_once(factory: sessionmaker[Session], conn: int, settings: SyncSettings) -> SyncRun:
    with transaction(factory) as session:
        run_id = enqueue(session, conn).id
    run(factory, run_id, "test-worker", settings=settings)
    with factory() as session:
        found = session.get(SyncRun, run_id)
        assert found is not None
        return found


def stored(factory: sessionmaker[Session], rtype: str) -> int:
    with factory() as session:
        return (
            session.scalar(
                sa.select(sa.func.count())
                .select_from(FhirRecord)
                .where(FhirRecord.resource_type == rtype)
            )
            or 0
        )


def settings_for(smart: SmartSettings, **limits: Any) -> SyncSettings:
    return SyncSettings(smart=smart, fetch_references=False, **limits)


def ended_incomplete(done: SyncRun, section: str, words: str) -> None:
    """The run is incomplete, says why in plain words, and the section names the same."""
    assert done.status == "incomplete", done.error
    assert done.error and words in done.error and "what arrived is kept" in done.error
    assert_plain(done.error)
    assert done.progress[section]["error"] and words in done.progress[section]["error"]
    assert_plain(done.progress[section]["error"])
    others = {k: p for k, p in done.progress.items() if k != section}
    assert all(p["done"] and p["error"] is None for p in others.values()), others


# --- pages per search ---------------------------------------------------------------------------


def test_a_search_longer_than_the_page_cap_stops_there_and_keeps_its_pages(
    factory, conn: int, smart: SmartSettings, fake: FakeEhr
) -> None:
    fake.searches["Encounter"] = chain("Encounter", encounter, pages=20_000, per_page=3)
    done = sync_once(factory, conn, settings_for(smart, max_pages_per_search=5))
    assert len(fake.to("Encounter")) == 5
    assert stored(factory, "Encounter") == 15  # every page read is kept
    assert done.progress["visits"]["fetched"] == 15
    ended_incomplete(done, "visits", f"{NAME} sent more visits than the portal reads in one go")
    assert stored(factory, "Patient") == 1 and stored(factory, "Observation") == 0


def test_a_20000_page_chain_stops_at_the_default_page_cap(
    factory, conn: int, smart: SmartSettings, fake: FakeEhr
) -> None:
    defaults = settings_for(smart)
    assert defaults.max_pages_per_search == 1000
    fake.searches["Encounter"] = chain("Encounter", encounter, pages=20_000)
    done = sync_once(factory, conn, defaults)
    assert len(fake.to("Encounter")) == 1000
    assert stored(factory, "Encounter") == 1000
    ended_incomplete(done, "visits", "more visits than the portal reads")


def test_a_search_that_ends_at_the_cap_is_complete(
    factory, conn: int, smart: SmartSettings, fake: FakeEhr
) -> None:
    fake.searches["Encounter"] = chain("Encounter", encounter, pages=5)
    done = sync_once(factory, conn, settings_for(smart, max_pages_per_search=5))
    assert done.status == "complete", done.error
    assert stored(factory, "Encounter") == 5


# --- records per run ----------------------------------------------------------------------------


def test_a_run_stops_at_the_record_cap_and_keeps_what_arrived(
    factory, conn: int, smart: SmartSettings, fake: FakeEhr
) -> None:
    fake.searches["Encounter"] = chain("Encounter", encounter, pages=20_000, per_page=10)
    fake.searches["Observation"] = chain("Observation", lab, pages=20_000, per_page=10)
    done = sync_once(factory, conn, settings_for(smart, max_records_per_run=100, max_connections=2))
    assert done.status == "incomplete"
    assert done.error and "sent more records than the portal reads in one update" in done.error
    assert_plain(done.error)
    kept = (
        stored(factory, "Encounter") + stored(factory, "Observation") + stored(factory, "Patient")
    )
    # the pages in flight when the cap was reached are kept too; nothing is asked after them
    assert 100 <= kept <= 100 + 2 * 10
    assert len(fake.requests) <= kept // 10 + 3
    for section in ("visits", "labs"):
        assert done.progress[section]["error"], section


# --- bytes per page -----------------------------------------------------------------------------


def huge_page(total: int, produced: list[int], chunk: int = 64 * 1024) -> Iterator[bytes]:
    """A page of `total` bytes of Bundle (entries of padding), made a chunk at a time."""
    head = b'{"resourceType":"Bundle","type":"searchset","entry":['
    filler = b" " * chunk
    yield head
    produced[0] += len(head)
    while produced[0] < total:
        yield filler
        produced[0] += chunk
    yield b"]}"


@pytest.mark.parametrize("announced", [False, True])
def test_a_50_mb_page_is_not_read_beyond_the_byte_cap(
    announced: bool, factory, conn: int, smart: SmartSettings, fake: FakeEhr
) -> None:
    produced = [0]

    def handler(request: httpx.Request, n: int) -> httpx.Response:
        if n == 1:
            return page("Encounter", 1, [encounter(1), encounter(2)], last=None)
        headers = {"Content-Length": str(50 * MB)} if announced else {}
        return json_response(huge_page(50 * MB, produced), **headers)

    fake.searches["Encounter"] = handler
    defaults = settings_for(smart)
    assert defaults.max_page_bytes == 20 * MB
    done = sync_once(factory, conn, defaults)
    # read up to the cap at most (nothing at all when the EHR announced the size), never 50 MB
    assert produced[0] <= (0 if announced else 20 * MB + 64 * 1024)
    assert len(fake.to("Encounter")) == 2  # a page too large is not asked for again
    assert stored(factory, "Encounter") == 2  # the page before it is kept
    ended_incomplete(done, "visits", f"{NAME} sent a page of visits larger than the portal reads")


def test_the_byte_cap_is_configurable(
    factory, conn: int, smart: SmartSettings, fake: FakeEhr
) -> None:
    produced = [0]
    fake.searches["Encounter"] = lambda _r, _n: json_response(huge_page(50 * MB, produced))
    done = sync_once(factory, conn, settings_for(smart, max_page_bytes=MB))
    assert produced[0] <= MB + 64 * 1024
    assert done.status == "incomplete"
    assert done.progress["visits"]["error"] and "larger than" in done.progress["visits"]["error"]


# --- time per run -------------------------------------------------------------------------------


def test_a_run_past_its_deadline_stops_and_keeps_what_arrived(
    factory, conn: int, smart: SmartSettings, fake: FakeEhr
) -> None:
    fake.seconds_per_request = 1.0  # each request takes a second on the run's clock
    fake.searches["Encounter"] = chain("Encounter", encounter, pages=20_000)
    limits = settings_for(smart, run_deadline_seconds=30, max_connections=1, clock=fake.clock)
    done = sync_once(factory, conn, limits)
    assert len(fake.requests) <= 31
    assert 20 <= stored(factory, "Encounter") <= 30
    assert done.status == "incomplete"
    assert done.error and f"The update from {NAME} took longer than the portal allows" in done.error
    assert "what arrived is kept" in done.error
    assert_plain(done.error)
    assert done.progress["visits"]["error"]


# --- nesting ------------------------------------------------------------------------------------


def test_a_page_nested_too_deeply_is_refused_as_unreadable(
    factory, conn: int, smart: SmartSettings, fake: FakeEhr
) -> None:
    depth = 100_000
    deep = b"[" * depth + b"]" * depth
    fake.searches["Encounter"] = lambda _r, _n: json_response(
        b'{"resourceType":"Bundle","type":"searchset","entry":[{"resource":' + deep + b"}]}"
    )
    done = sync_once(factory, conn, settings_for(smart))
    ended_incomplete(done, "visits", f"{NAME} sent visits in a form the portal cannot read")
    assert stored(factory, "Patient") == 1


def nested_extension(levels: int, leaf: bytes = b'"x"') -> bytes:
    """JSON text of an extension holding an extension, `levels` deep (two JSON levels each),
    written out directly: Python's own encoders stop at a depth like this."""
    branch = b'{"url":"http://example.org/branch","extension":['
    return (
        branch * levels
        + b'{"url":"http://example.org/leaf","valueString":'
        + leaf
        + b"}"
        + b"]}" * levels
    )


def page_with_nested_visit(levels: int, leaf: bytes = b'"x"') -> bytes:
    """A page of three visits, the first carrying an extension nested `levels` deep."""
    odd = orjson.dumps(encounter(0))[:-1] + b',"extension":[' + nested_extension(levels, leaf)
    others = b",".join(b'{"resource":' + orjson.dumps(encounter(i)) + b"}" for i in (1, 2))
    return (
        b'{"resourceType":"Bundle","type":"searchset","entry":[{"resource":'
        + odd
        + b"]}},"
        + others
        + b"]}"
    )


def records_and_set_aside(factory: sessionmaker[Session]) -> tuple[set[str], list[Any]]:
    with factory() as session:
        ids = set(session.scalars(sa.select(FhirRecord.resource_id)))
        return ids, list(session.scalars(sa.select(QuarantinedResource)))


def test_a_resource_nested_as_deep_as_records_go_is_stored(
    factory, conn: int, smart: SmartSettings, fake: FakeEhr
) -> None:
    body = page_with_nested_visit(100)  # 203 levels of objects and lists
    fake.searches["Encounter"] = lambda _r, _n: json_response(body)
    done = sync_once(factory, conn, settings_for(smart))
    assert done.status == "complete", done.error
    ids, set_aside = records_and_set_aside(factory)
    assert {"visit-0", "visit-1", "visit-2"} <= ids and set_aside == []


@pytest.mark.parametrize("levels", [126, 300, 490])
def test_a_resource_nested_deeper_is_set_aside_and_the_rest_of_its_page_stored(
    levels: int, factory, conn: int, smart: SmartSettings, fake: FakeEhr
) -> None:
    """Deeper than 254 levels (what could be read back safely), yet not so deep the page
    cannot be read: that resource is set aside, without its content; nothing crashes."""
    body = page_with_nested_visit(levels)
    fake.searches["Encounter"] = lambda _r, _n: json_response(body)
    done = sync_once(factory, conn, settings_for(smart))
    assert done.status == "complete", done.error
    ids, set_aside = records_and_set_aside(factory)
    assert {"visit-1", "visit-2"} <= ids and "visit-0" not in ids
    ((entry,),) = [set_aside]
    assert entry.reason == "nested too deeply to read"
    assert (entry.resource_type, entry.resource_id, entry.raw) == ("Encounter", "visit-0", None)
    assert done.progress["visits"]["quarantined"] == 1


def test_a_deep_resource_the_quick_check_rejects_is_judged_without_a_crash(
    factory, conn: int, smart: SmartSettings, fake: FakeEhr
) -> None:
    """Invalid deep down (a number where text belongs): fhirclient's models, which go several
    calls deep per level, give the verdict, or the depth does; the page is stored."""
    body = page_with_nested_visit(120, leaf=b"5")
    fake.searches["Encounter"] = lambda _r, _n: json_response(body)
    done = sync_once(factory, conn, settings_for(smart))
    assert done.status == "complete", done.error
    ids, set_aside = records_and_set_aside(factory)
    assert {"visit-1", "visit-2"} <= ids and "visit-0" not in ids
    assert [e.resource_id for e in set_aside] == ["visit-0"]


# --- configuration ------------------------------------------------------------------------------


def test_the_limits_come_from_the_configuration(app: Flask, monkeypatch) -> None:
    from portal.app import create_app
    from portal.sync.worker import sync_settings

    defaults = sync_settings(app)
    assert (
        defaults.max_pages_per_search,
        defaults.max_records_per_run,
        defaults.max_page_bytes,
        defaults.run_deadline_seconds,
    ) == (1000, 200_000, 20 * MB, 900)
    monkeypatch.setenv("PORTAL_SYNC_MAX_PAGES_PER_SEARCH", "50")
    monkeypatch.setenv("PORTAL_SYNC_RUN_DEADLINE_SECONDS", "60")
    configured = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": app.config["DATABASE_URL"],
            "SECRET_KEY": app.config["SECRET_KEY"],
            "SYNC_MAX_RECORDS_PER_RUN": 5000,
            "SYNC_MAX_PAGE_BYTES": MB,
        }
    )
    limits = sync_settings(configured)
    db.engine(configured).dispose()
    assert (
        limits.max_pages_per_search,
        limits.max_records_per_run,
        limits.max_page_bytes,
        limits.run_deadline_seconds,
    ) == (50, 5000, MB, 60)
