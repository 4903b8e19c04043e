"""Benchmark: the portal's background sync against the floor of the same FHIR searches.

Run with no arguments from the repository root:  .venv/bin/python benchmarks/sync.py

It starts a sandbox EHR (in a process of its own, as a real EHR is) holding the largest shared
patient (Vito Feeney or Fletcher Hyatt, whichever has more resources), makes a temporary
portal database, connects through the real OAuth flow, then prints:

- sync: the portal's whole sync (fetch, validate, classify, store, progress), median of runs;
- floor: the same requests fired concurrently (same connection limit) with a plain httpx
  client that only follows next links;
- sequential: the same requests one after another;

and ends with `sync_vs_floor=<x> sync_vs_sequential=<y>`. The three are interleaved, so a busy
moment of the machine falls on all alike. This process is set up as a serving portal process
is (what startup built is frozen out of full garbage collections, portal.serving) and keeps no
copy of the bundle.
"""

from __future__ import annotations

import gzip
import json
import logging
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "fhir" / "synthea"
SHIPPED = ROOT / "portal" / "sandbox" / "data"
CANDIDATES = ("Vito_Feeney", "Fletcher_Hyatt")
RUNS = 21
REDIRECT_URI = "http://127.0.0.1:5999/oauth/callback"

sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from werkzeug.serving import WSGIRequestHandler, make_server  # noqa: E402

from portal.db import make_engine, make_sessionmaker, transaction  # noqa: E402
from portal.migrate import upgrade  # noqa: E402
from portal.models import Account, FhirRecord, QuarantinedResource, SyncRun  # noqa: E402
from portal.registry import upsert_ehr  # noqa: E402
from portal.sandbox.accounts import create_demo_users, register_client  # noqa: E402
from portal.sandbox.app import create_sandbox_app  # noqa: E402
from portal.sandbox.db import sdb  # noqa: E402
from portal.sandbox.fhir.store import load_bundle  # noqa: E402
from portal.sandbox.models import PatientUser  # noqa: E402
from portal.sandbox.setup import PORTAL_CLIENT_SCOPE  # noqa: E402
from portal.serving import freeze_startup_objects  # noqa: E402
from portal.smart.oauth import begin, complete, new_browser_binding  # noqa: E402
from portal.smart.settings import settings_from_config  # noqa: E402
from portal.smart.tokens import access_token, connect  # noqa: E402
from portal.sync.engine import SyncSettings, enqueue, run  # noqa: E402
from portal.sync.fastcheck import forget_values  # noqa: E402
from portal.sync.plan import plan  # noqa: E402


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def largest_patient() -> tuple[str, dict[str, Any]]:
    """(name, bundle) of the candidate with the most resources."""
    best: tuple[int, str, dict[str, Any]] | None = None
    for name in CANDIDATES:
        shared = sorted(SHARED.glob(f"{name}_*.json")) if SHARED.is_dir() else []
        if shared:
            bundle = json.loads(shared[0].read_text())
        else:
            with gzip.open(SHIPPED / f"{name.lower()}.json.gz", "rt") as fh:
                bundle = json.load(fh)
        size = len(bundle.get("entry", []))
        if best is None or size > best[0]:
            best = (size, name.replace("_", " "), bundle)
    assert best is not None
    return best[1], best[2]


def start_sandbox(bundle: dict[str, Any]) -> tuple[Any, Any, str, str]:
    """(server, app, base URL, patient id) of a sandbox holding only this patient."""
    holder: dict[str, Any] = {}
    server = make_server(
        "127.0.0.1",
        0,
        lambda env, start: holder["app"](env, start),
        threaded=True,
        request_handler=_Quiet,
    )
    base_url = f"http://127.0.0.1:{server.server_port}"
    app = create_sandbox_app(
        {"NAME": "Bench EHR", "SLUG": "bench", "BASE_URL": base_url, "DEMO": True}
    )
    holder["app"] = app
    with app.app_context(), transaction(sdb.sessionmaker(app)) as session:
        patient_id = load_bundle(session, bundle).patient_id
        create_demo_users(session)
        register_client(
            session,
            client_id="portal",
            name="Portal",
            client_type="public",
            redirect_uris=[REDIRECT_URI],
            scope=PORTAL_CLIENT_SCOPE,
        )
    assert patient_id
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, app, base_url, patient_id


class _Forms(HTMLParser):
    """The first form's action and fields (enough for the sandbox's login and consent)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, list[tuple[str, str]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), []))
        elif (
            tag == "input"
            and self.forms
            and a.get("name")
            and (a.get("type") != "checkbox" or "checked" in a)
        ):
            self.forms[-1][1].append((a["name"], a.get("value", "")))


def form_fields(html: str, containing: str) -> tuple[str, list[tuple[str, str]]]:
    parser = _Forms()
    parser.feed(html)
    for action, fields in parser.forms:
        if any(name == containing for name, _ in fields):
            return action, fields
    raise RuntimeError(f"no form with {containing!r}")


def sandbox_process(bundle: dict[str, Any], pipe: Any) -> None:
    """The EHR in a process of its own, as a real one would be: serve until told to stop."""
    logging.basicConfig(level=logging.WARNING)
    server, app, base_url, patient_id = start_sandbox(bundle)
    with app.app_context(), transaction(sdb.sessionmaker(app)) as session:
        user = session.scalar(sa.select(PatientUser).limit(1))
        pipe.send((base_url, patient_id, user.username, user.demo_password))
    pipe.recv()
    server.shutdown()
    sdb.engine(app).dispose()


def connect_patient(username: str, password: str, base_url: str, factory: Any, smart: Any) -> int:
    """The real OAuth flow: sign in at the EHR, consent, exchange, store the connection."""
    with transaction(factory) as session:
        ehr = upsert_ehr(
            session, name="Bench EHR", fhir_base=base_url + "/fhir", client_id="portal"
        )
        account = Account(display_name="Bench")
        session.add(account)
        session.flush()
        binding = new_browser_binding()
        url = begin(
            session, ehr, redirect_uri=REDIRECT_URI, browser_binding=binding, settings=smart
        )
    with httpx.Client(base_url=base_url) as browser:
        _, fields = form_fields(browser.get("/auth/login").text, "password")
        data = dict(fields) | {"username": username, "password": password}
        browser.post("/auth/login", data=data)
        page = browser.get(url)
        action, fields = form_fields(page.text, "csrf_token")
        kept = re.findall(r'name="kept" value="([^"]*)"', page.text)
        answer = browser.post(
            action or url, data={**dict(fields), "kept": kept, "decision": "allow"}
        )
    callback = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["location"]).query).items()}
    with transaction(factory) as session:
        result = complete(
            session,
            state=callback["state"],
            code=callback["code"],
            browser_binding=binding,
            redirect_uri=REDIRECT_URI,
            settings=smart,
        )
        return connect(session, result, session.get(Account, account.id), settings=smart).id


def reset(factory: Any) -> None:
    with transaction(factory) as session:
        for model in (QuarantinedResource, FhirRecord, SyncRun):
            session.execute(sa.delete(model))


def timed_sync(factory: Any, connection_id: int, settings: SyncSettings) -> float:
    reset(factory)
    forget_values()  # the same patient again must not find its dates already checked
    with transaction(factory) as session:
        run_id = enqueue(session, connection_id).id
    start = time.perf_counter()
    status = run(factory, run_id, "bench", settings=settings)
    elapsed = time.perf_counter() - start
    assert status == "complete", status
    return elapsed


def request_urls(fhir_base: str, searches: list[Any]) -> list[str]:
    urls = []
    for s in searches:
        if s.read_id:
            urls.append(f"{fhir_base}/{s.resource_type}/{s.read_id}")
        else:
            urls.append(f"{fhir_base}/{s.resource_type}?{urlencode(list(s.params))}")
    return urls


def fetch_all(http: httpx.Client, url: str, token: str) -> int:
    """GET a URL and every next page; returns the number of resources."""
    count = 0
    next_url: str | None = url
    while next_url:
        body = http.get(next_url, headers={"Authorization": f"Bearer {token}"}).json()
        count += len(body.get("entry", [])) if body.get("resourceType") == "Bundle" else 1
        next_url = next(
            (link["url"] for link in body.get("link", []) if link.get("relation") == "next"), None
        )
    return count


def plain(urls: list[str], token: str, workers: int) -> float:
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with httpx.Client(limits=limits, timeout=30) as http:
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda u: fetch_all(http, u, token), urls))
        return time.perf_counter() - start


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    # Everything (keys, SQLite files) lives in a temporary instance folder.
    tmp = tempfile.TemporaryDirectory(prefix="portal-sync-bench-")
    os.environ["PORTAL_INSTANCE_PATH"] = tmp.name
    name, bundle = largest_patient()
    spawn = multiprocessing.get_context("spawn")
    here, there = spawn.Pipe()
    ehr = spawn.Process(target=sandbox_process, args=(bundle, there), daemon=True)
    ehr.start()
    size = len(bundle["entry"])
    del bundle  # the EHR has its copy; the portal's process would never hold one
    base_url, patient_id, username, password = here.recv()
    engine = make_engine(f"sqlite:///{Path(tmp.name) / 'portal-bench.db'}")
    upgrade(engine)
    factory = make_sessionmaker(engine)
    smart = settings_from_config({"ENV": "development"}, Path(tmp.name))
    settings = SyncSettings(smart=smart)
    connection_id = connect_patient(username, password, base_url, factory, smart)
    token = access_token(factory, connection_id, settings=smart)

    timed_sync(factory, connection_id, settings)  # warm-up: imports, caches
    freeze_startup_objects()  # as every serving process does once started (portal.serving)
    with factory() as session:
        stored = session.scalar(sa.select(sa.func.count()).select_from(FhirRecord))
        refs = session.execute(
            sa.select(FhirRecord.resource_type, FhirRecord.resource_id).where(
                FhirRecord.resource_type.in_(("Practitioner", "Organization", "Medication"))
            )
        ).all()
        granted = session.scalar(sa.text("select granted_scope from ehr_connection"))

    fhir_base = base_url + "/fhir"
    searches = plan(granted, patient_id, page_size=settings.page_size)
    urls = request_urls(fhir_base, searches)
    by_type: dict[str, list[str]] = {}
    for rtype, rid in refs:
        by_type.setdefault(rtype, []).append(rid)
    urls += [f"{fhir_base}/{t}?{urlencode({'_id': ','.join(ids)})}" for t, ids in by_type.items()]

    plain(urls, token, settings.max_connections)  # warm-up
    # Interleaved, so a busy moment of the machine falls on all three alike.
    sync_times, floors, sequentials = [], [], []
    for _ in range(RUNS):
        sync_times.append(timed_sync(factory, connection_id, settings))
        floors.append(plain(urls, token, settings.max_connections))
        sequentials.append(plain(urls, token, 1))
    sync_time = statistics.median(sync_times)
    floor, sequential = statistics.median(floors), statistics.median(sequentials)
    here.send("stop")
    ehr.join(timeout=10)
    engine.dispose()
    tmp.cleanup()

    print(f"patient: {name} ({size} resources in the bundle)")
    print(f"stored by the portal: {stored} records from {len(urls)} request chains")
    print(
        f"page size {settings.page_size}, {settings.max_connections} connections, "
        f"median of {RUNS} runs"
    )
    print(f"sync:       {sync_time:.3f} s  (runs: {', '.join(f'{t:.3f}' for t in sync_times)})")
    print(f"floor:      {floor:.3f} s  (plain httpx, concurrent, following next links)")
    print(f"sequential: {sequential:.3f} s  (plain httpx, one request at a time)")
    print(f"cpus: {os.cpu_count()}; the EHR runs in a process of its own on this machine")
    print(f"sync_vs_floor={sync_time / floor:.2f} sync_vs_sequential={sync_time / sequential:.2f}")


if __name__ == "__main__":
    main()
