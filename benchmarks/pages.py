"""How fast the records pages render for a large patient (~5,000 resources), next to hello-world.

Builds one large patient by merging the shared Synthea bundles (every patient reference re-pointed
to one patient), stores it as FhirRecord rows in a temporary SQLite database, and times each
records page through the Flask test client. Prints median, p95 and size (KB) per page, the
slowest built pages and, last, the worst page's ratios to hello-world:
`median_vs_hello=<x> p95_vs_hello=<y> built_vs_hello=<z> unfolded_vs_hello=<u>` (prepared median,
prepared p95, built median, unfolded median).

Pages are prepared once per version of the record (portal.phr.snapshots; the sync prepares the
landing pages when it ends, which folds every section into its stored facts, portal.phr.facts).
So a visit is served from the prepared page. The "built" column is the page the sync did not
prepare (another page number, another viewer): before each run the record's version moves, the
landing pages are prepared as a sync's end does, and the prepared pages are dropped; the page
is then a query of the stored facts and a render. "Unfolded" is a change nothing folded yet
(an own entry, a split): the page folds its section itself, once.

`--resources N` (default 5000) sizes the patient: bundles are merged until there are N
resources; when all of them give fewer, the patient is multiplied. Each copy has every resource
but the shared ones (the patient, clinicians, clinics, places) with a new id, every reference
inside it re-pointed to the copy's ids (its visits still link their results) and its dates moved
back by whole years (the span of the record per copy), so the record reads as a longer history.
The pages timed include the last page of visits and of lab tests, worked out from the data.
Fewer built runs are made for a larger patient (at least 5); `--runs` sets the runs per
page (built pages get a quarter of them, at least 3).

Usage: .venv/bin/python benchmarks/pages.py [--resources 20000] [--runs 10]
"""

from __future__ import annotations

import argparse
import calendar
import gzip
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402

from portal.models import SessionKind  # noqa: E402
from portal.smart import scopes  # noqa: E402

TARGET = 5000
RUNS = 40
BUILT_RUNS = 10
WARMUP = 5
# Kept once when the patient is multiplied: a longer history has the same person and clinics.
SHARED = frozenset({"Patient", "Practitioner", "PractitionerRole", "Organization", "Location"})
# A bundle's reference to one of its entries (by fullUrl), quoted.
URN = re.compile(r'"(urn:uuid:[^"]*)"')
# A FHIR date, dateTime or instant with a day (a bare year could be a code).
DATE = re.compile(r"^(\d{4})(-\d{2}-\d{2}.*)$", re.DOTALL)
# Types the portal never asks for (see portal.smart.scopes): the sync does not store them.
ASKED = set(scopes.resource_types())
PAGES = [
    "/records/",
    "/records/problems",
    "/records/medications",
    "/records/allergies",
    "/records/immunizations",
    "/records/labs",
    "/records/labs?page=3",
    "/records/labs/test/2339-0",
    "/records/vitals",
    "/records/vitals/weight",
    "/records/visits",
    "/records/visits?page=5",
    "/records/procedures",
    "/records/documents",
    "/records/care-plans",
    "/records/care-team",
    "/records/coverage",
    "/records/social-history",
    "/records/questionnaires",
    "/records/bills",
    "/records/imaging",
]


def bundle_files() -> list[Path]:
    shared = REPO.parent / "shared" / "fhir" / "synthea"
    files = sorted(p for p in shared.glob("*.json") if p.name != "MANIFEST.json")
    return files or sorted((REPO / "portal" / "sandbox" / "data").glob("*.json.gz"))


def read(path: Path) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return fh.read()
    return path.read_text(encoding="utf-8")


def merged_patient(target: int = TARGET) -> list[dict[str, Any]]:
    """Resources of several bundles as one patient's, references resolved, ids unique."""
    resources: dict[tuple[str, str], dict[str, Any]] = {}
    patient_id: str | None = None
    for path in bundle_files():
        text = read(path)
        bundle = json.loads(text)
        own = next(
            e["resource"]["id"]
            for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Patient"
        )
        if patient_id is None:
            patient_id = own
        # Re-point this bundle's patient to the one patient; urn:uuid references become Type/id.
        text = text.replace(own, patient_id)
        bundle = json.loads(text)
        urns = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle["entry"]
            if e.get("fullUrl", "").startswith("urn:uuid:")
        }
        # One pass over the text (a replace per urn took seconds per bundle).
        text = URN.sub(lambda m, urns=urns: f'"{urns.get(m.group(1), m.group(1))}"', text)
        for entry in json.loads(text)["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] not in ASKED:
                continue
            if resource["resourceType"] == "Patient" and resources:
                continue
            resources.setdefault((resource["resourceType"], resource["id"]), resource)
        if len(resources) >= target:
            break
    return list(resources.values())


def rewrite(value: Any, leaf: Callable[[str | None, str], str], key: str | None = None) -> Any:
    """`value` (FHIR JSON) with every string replaced by `leaf(its key, it)`."""
    if isinstance(value, dict):
        return {k: rewrite(v, leaf, k) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite(v, leaf, key) for v in value]
    if isinstance(value, str):
        return leaf(key, value)
    return value


def earlier(text: str, years: int) -> str:
    """A FHIR date(Time) `years` earlier (29 February becomes the 28th); other text as it is."""
    match = DATE.match(text)
    if match is None:
        return text
    year, rest = int(match.group(1)) - years, match.group(2)
    if rest.startswith("-02-29") and not calendar.isleap(year):
        rest = "-02-28" + rest[6:]
    return f"{year:04d}{rest}"


def multiplied(base: list[dict[str, Any]], target: int) -> list[dict[str, Any]]:
    """`base` and copies of it up to `target` resources: new ids, references inside a copy
    re-pointed to the copy's ids, dates moved back by the record's span in whole years per copy."""
    copied = [r for r in base if r["resourceType"] not in SHARED]
    if len(base) >= target or not copied:
        return base
    years: list[int] = []

    def year_of(_key: str | None, text: str) -> str:
        if match := DATE.match(text):
            years.append(int(match.group(1)))
        return text

    for resource in copied:
        rewrite(resource, year_of)
    copies = -(-(target - len(base)) // len(copied))
    span = max(years) - min(years) + 1 if years else 1
    # Never before year 1 (datetime's first): a very long history gets shorter steps.
    step = max(1, min(span, (min(years, default=2000) - 1) // copies))
    out = list(base)
    for number in range(1, copies + 1):
        ids = {
            (r["resourceType"], r["id"]): str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{number}/{r['resourceType']}/{r['id']}")
            )
            for r in copied
        }
        by_id = {old: new for (_type, old), new in ids.items()}
        out += [copy_of(r, ids, by_id, step * number) for r in copied[: target - len(out)]]
    return out


def copy_of(
    resource: dict[str, Any],
    ids: dict[tuple[str, str], str],
    by_id: dict[str, str],
    years: int,
) -> Any:
    """`resource` with the new ids (its own, its references' by `ids`, identifiers made of an
    id by `by_id`) and its dates `years` earlier."""

    def leaf(key: str | None, text: str) -> str:
        if key == "reference":
            parts = text.split("/")
            new = ids.get((parts[0], parts[1])) if len(parts) >= 2 else None
            return "/".join([parts[0], new, *parts[2:]]) if new else text
        if key in ("id", "value") and text in by_id:
            return by_id[text]
        return earlier(text, years)

    return rewrite(resource, leaf)


def patient(target: int) -> list[dict[str, Any]]:
    """The benchmark patient: merged bundles, multiplied when they give fewer than `target`."""
    return multiplied(merged_patient(target), target)


def load(url: str, target: int = TARGET) -> tuple[int, int]:
    """(account id, resources stored) of the benchmark patient in the database at `url`."""
    from portal.db import make_engine, utcnow
    from portal.migrate import upgrade
    from portal.models import Account, EhrConnection, EhrServer, FhirRecord
    from portal.phr.classify import classify

    engine = make_engine(url)
    upgrade(engine)
    resources = patient(target)
    now = utcnow()
    with engine.begin() as conn:
        ehr = conn.execute(
            sa.insert(EhrServer).values(
                name="Riverside General Hospital",
                fhir_base="http://127.0.0.1:5001/fhir",
                client_id="portal",
                created_at=now,
            )
        ).inserted_primary_key[0]
        account = conn.execute(
            sa.insert(Account).values(display_name="Benchmark", created_at=now)
        ).inserted_primary_key[0]
        connection = conn.execute(
            sa.insert(EhrConnection).values(
                account_id=account,
                ehr_server_id=ehr,
                patient_id="bench",
                granted_scope="openid fhirUser patient/*.rs",
                created_at=now,
                last_synced_at=now,
                status="active",
                need_patient_banner=True,
            )
        ).inserted_primary_key[0]
        rows = []
        for r in resources:
            c = classify(r)
            rows.append(
                {
                    "connection_id": connection,
                    "resource_type": r["resourceType"],
                    "resource_id": r["id"],
                    "fetched_at": now,
                    "category": c.category,
                    "status": c.status,
                    "code_system": c.code_system,
                    "code": c.code,
                    "display": c.display,
                    "effective_at": c.effective_at,
                    "encounter_ref": c.encounter_ref,
                    "raw": r,
                }
            )
        conn.execute(sa.insert(FhirRecord), rows)
    engine.dispose()
    return int(account), len(resources)


def last_pages(url: str, account_id: int) -> list[str]:
    """The last page of visits and of lab tests of the patient, as the domain pages them."""
    from sqlalchemy.orm import Session

    from portal.db import make_engine
    from portal.phr import labs, visits
    from portal.phr.access import open_record
    from portal.phr.records import Records

    engine = make_engine(url)
    with Session(engine) as session:
        records = Records(session, open_record(session, account_id))
        last = {"visits": visits.visits(records).pages, "labs": labs.overview(records).tests.pages}
    engine.dispose()
    return [f"/records/{name}?page={number}" for name, number in last.items() if number > 1]


def page_list(last: list[str]) -> list[str]:
    """PAGES and the last pages, each once, in that order."""
    return list(dict.fromkeys([*PAGES, *last]))


def timings(
    call: Callable[[], Any], runs: int = RUNS, before: Callable[[], Any] | None = None
) -> list[float]:
    for _ in range(WARMUP):
        call()
    out = []
    for _ in range(runs):
        if before is not None:
            before()
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--resources", type=int, default=TARGET, help="patient size")
    parser.add_argument("--runs", type=int, default=None, help="runs per prepared page")
    args = parser.parse_args()
    runs = args.runs or RUNS
    # A larger patient takes longer per built page: fewer of them keep the whole run short.
    if args.runs:
        built_runs = max(3, args.runs // 4)
    else:
        built_runs = max(5, BUILT_RUNS * TARGET // max(args.resources, TARGET))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PORTAL_INSTANCE_PATH"] = tmp
        url = f"sqlite:///{tmp}/bench.db"
        account_id, stored = load(url, args.resources)
        pages = page_list(last_pages(url, account_id))

        from portal.app import create_app
        from portal.models import EhrConnection, FactItem, FactList, PageSnapshot
        from portal.web.records import prepare_record

        app = create_app(
            {
                "DATABASE_URL": url,
                "SECRET_KEY": "benchmark-secret-key-0123456789-abcdefghijkl",
                "RATELIMIT_ENABLED": False,
            }
        )

        @app.get("/hello")
        def hello() -> str:
            return "Hello, world!"

        client = app.test_client()
        with client.session_transaction() as session:
            session.begin(SessionKind.FULL, account_id, None)  # signed in, as sign_in does

        def get(path: str) -> Callable[[], Any]:
            def call() -> Any:
                answer = client.get(path)
                if answer.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {answer.status_code}")
                return answer

            return call

        engine = sa.create_engine(url)

        def record_changed() -> None:
            with engine.begin() as conn:
                conn.execute(
                    sa.update(EhrConnection).values(data_version=EhrConnection.data_version + 1)
                )

        def record_stored() -> None:
            """A sync stored a change: the record's version moves and the sync's end prepares
            the landing pages, folding each section into its stored facts, as after every run;
            the prepared pages are then dropped, so the page timed is built from the facts (a
            query and a render), as a page the sync did not prepare is."""
            record_changed()
            prepare_record(app, account_id)
            with engine.begin() as conn:
                conn.execute(sa.delete(PageSnapshot))
            settle()

        def nothing_stored() -> None:
            """A change nothing folded yet (an own entry, a split): the page folds it."""
            record_changed()
            with engine.begin() as conn:
                conn.execute(sa.delete(FactItem))
                conn.execute(sa.delete(FactList))
            settle()

        def settle() -> None:
            """Write the WAL those writes left back into the database file now: else the
            timed page's own small commit (its prepared copy) pays SQLite's checkpoint of
            the sync's writes, a cost of the sync, not of the page."""
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

        hello_times = timings(get("/hello"), runs * 5)
        hello_median, hello_p95 = statistics.median(hello_times), p95(hello_times)
        print(
            f"patient: {stored} resources stored (SQLite), {runs} runs per page, {built_runs} built"
        )
        print(
            f"{'page':34} {'median ms':>10} {'p95 ms':>8} {'x hello':>8} {'KB':>6}"
            f" {'built ms':>9} {'x hello':>8} {'unfolded':>9} {'x hello':>8}"
        )
        hello_row = f"{hello_median * 1e3:10.2f} {hello_p95 * 1e3:8.2f} {1:8.1f}"
        print(f"{'/hello (hello-world)':34} {hello_row}")
        worst_median = worst_p95 = worst_built = worst_cold = 0.0
        built_pages: list[tuple[float, str, float]] = []
        for path in pages:
            size = len(get(path)().data) / 1024
            times = timings(get(path), runs)
            built = statistics.median(timings(get(path), built_runs, before=record_stored))
            cold = statistics.median(timings(get(path), built_runs, before=nothing_stored))
            worst_cold = max(worst_cold, cold / hello_median)
            median, high = statistics.median(times), p95(times)
            worst_median = max(worst_median, median / hello_median)
            worst_p95 = max(worst_p95, high / hello_p95)
            worst_built = max(worst_built, built / hello_median)
            built_pages.append((built, path, size))
            print(
                f"{path:34} {median * 1e3:10.2f} {high * 1e3:8.2f} "
                f"{median / hello_median:8.1f} {size:6.0f}"
                f" {built * 1e3:9.2f} {built / hello_median:8.1f}"
                f" {cold * 1e3:9.2f} {cold / hello_median:8.1f}"
            )
        engine.dispose()
        print("slowest built (not prepared, after a sync stored a change):")
        for built, path, size in sorted(built_pages, reverse=True)[:5]:
            print(f"  {path:32} {built * 1e3:9.2f} ms {size:6.0f} KB")
        print(
            f"median_vs_hello={worst_median:.1f} p95_vs_hello={worst_p95:.1f}"
            f" built_vs_hello={worst_built:.1f} unfolded_vs_hello={worst_cold:.1f}"
        )


if __name__ == "__main__":
    main()
