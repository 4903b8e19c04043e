"""How fast the records pages render for a ~5,000-resource patient, next to a hello-world route.

Builds one large patient by merging the shared Synthea bundles (every patient reference re-pointed
to one patient), stores it as FhirRecord rows in a temporary SQLite database, and times each
records page through the Flask test client. Prints median and p95 per page and, last, the worst
page's ratios to hello-world: `median_vs_hello=<x> p95_vs_hello=<y>`.

Pages are prepared once per version of the record (portal.phr.snapshots; the sync prepares the
landing pages when it ends), so a visit is served from the prepared page. The "built" column is
the other case, the first visit after the record changed (the version is bumped before each
of those runs): the page is worked out from the stored FHIR resources and rendered.

Usage: .venv/bin/python benchmarks/pages.py
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
import sys
import tempfile
import time
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


def merged_patient() -> list[dict[str, Any]]:
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
        for old, new in urns.items():
            text = text.replace(f'"{old}"', f'"{new}"')
        for entry in json.loads(text)["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] not in ASKED:
                continue
            if resource["resourceType"] == "Patient" and resources:
                continue
            resources.setdefault((resource["resourceType"], resource["id"]), resource)
        if len(resources) >= TARGET:
            break
    return list(resources.values())


def load(url: str) -> tuple[int, int]:
    """(account id, resources stored) of the merged patient in the database at `url`."""
    from portal.db import make_engine, utcnow
    from portal.migrate import upgrade
    from portal.models import Account, EhrConnection, EhrServer, FhirRecord
    from portal.phr.classify import classify

    engine = make_engine(url)
    upgrade(engine)
    resources = merged_patient()
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
                    "raw": r,
                }
            )
        conn.execute(sa.insert(FhirRecord), rows)
    engine.dispose()
    return int(account), len(resources)


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
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PORTAL_INSTANCE_PATH"] = tmp
        url = f"sqlite:///{tmp}/bench.db"
        account_id, stored = load(url)

        from portal.app import create_app
        from portal.models import EhrConnection

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

        hello_times = timings(get("/hello"), RUNS * 5)
        hello_median, hello_p95 = statistics.median(hello_times), p95(hello_times)
        print(f"patient: {stored} resources stored (SQLite), {RUNS} runs per page")
        print(
            f"{'page':34} {'median ms':>10} {'p95 ms':>8} {'x hello':>8} {'KB':>6}"
            f" {'built ms':>9} {'x hello':>8}"
        )
        hello_row = f"{hello_median * 1e3:10.2f} {hello_p95 * 1e3:8.2f} {1:8.1f}"
        print(f"{'/hello (hello-world)':34} {hello_row}")
        worst_median = worst_p95 = worst_built = 0.0
        for path in PAGES:
            size = len(get(path)().data) / 1024
            times = timings(get(path))
            built = statistics.median(timings(get(path), BUILT_RUNS, before=record_changed))
            median, high = statistics.median(times), p95(times)
            worst_median = max(worst_median, median / hello_median)
            worst_p95 = max(worst_p95, high / hello_p95)
            worst_built = max(worst_built, built / hello_median)
            print(
                f"{path:34} {median * 1e3:10.2f} {high * 1e3:8.2f} "
                f"{median / hello_median:8.1f} {size:6.0f}"
                f" {built * 1e3:9.2f} {built / hello_median:8.1f}"
            )
        engine.dispose()
        print(f"first visit after a change (built): worst median_vs_hello={worst_built:.1f}")
        print(f"median_vs_hello={worst_median:.1f} p95_vs_hello={worst_p95:.1f}")


if __name__ == "__main__":
    main()
