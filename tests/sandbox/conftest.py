"""Sandbox EHR fixtures: an instance with a few shipped patients, reached in-process.

Tests talk to it over HTTP semantics with httpx's WSGI transport, so authlib's real client
code runs against the real server code without opening ports.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask

from portal.db import transaction
from portal.sandbox.accounts import create_demo_users
from portal.sandbox.app import create_sandbox_app
from portal.sandbox.db import sdb
from portal.sandbox.fhir.store import LoadResult, load_bundle, read_bundle_file
from portal.sandbox.views.admin import ADMIN_USER
from tests.conftest import WORKER, fresh_pg_schema, pg_base_url

DATA = Path(__file__).resolve().parents[2] / "portal" / "sandbox" / "data"
BASE_URL = "http://ehr.test"
# Small but varied: a child, a patient with allergies, one whose name has an apostrophe.
TEST_BUNDLES = ("arron_schamberger", "christin_stiedemann", "raeann_okon")
# The fault controls' credential of `sandbox_app` (configured; other instances generate one).
ADMIN_PASSWORD = "admin-password-of-the-test-sandbox"
ADMIN = httpx.BasicAuth(ADMIN_USER, ADMIN_PASSWORD)


def admin_auth(app: Flask) -> httpx.BasicAuth:
    """HTTP Basic for an instance's /admin/faults (portal/sandbox/views/admin.py)."""
    return httpx.BasicAuth(ADMIN_USER, app.config["ADMIN_PASSWORD"])


def sandbox_database(slug: str, instance_dir: Path) -> tuple[str, str | None]:
    """(url, schema) for a fresh sandbox store of this run."""
    if pg_base_url():
        schema = f"sb_{slug}_{WORKER}"
        fresh_pg_schema(schema)
        return str(pg_base_url()), schema
    path = instance_dir / f"sandbox-{slug}-{WORKER}.db"
    path.unlink(missing_ok=True)
    return f"sqlite:///{path}", None


@pytest.fixture(autouse=True)
def insecure_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """authlib refuses plain-http OAuth except on loopback; the test EHR is http://ehr.test."""
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")


@pytest.fixture(scope="session")
def sandbox_app(instance_dir: Path) -> Iterator[Flask]:
    url, schema = sandbox_database("test", instance_dir)
    app = create_sandbox_app(
        {
            "TESTING": True,
            "NAME": "Test General",
            "SLUG": "test",
            "BASE_URL": BASE_URL,
            "DATABASE_URL": url,
            "DB_SCHEMA": schema,
            "DEMO": True,
            "FAULTS_ENABLED": True,
            "ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
    )
    with app.app_context(), transaction(sdb.sessionmaker(app)) as session:
        app.extensions["test_patients"] = {
            name: load_bundle(session, read_bundle_file(DATA / f"{name}.json.gz"))
            for name in TEST_BUNDLES
        }
        create_demo_users(session)  # as a real instance does (portal.sandbox.setup)
    yield app
    sdb.engine(app).dispose()


@pytest.fixture(scope="session")
def loaded(sandbox_app: Flask) -> dict[str, LoadResult]:
    """What each test bundle loaded: patient id and resource counts per type."""
    result: dict[str, LoadResult] = sandbox_app.extensions["test_patients"]
    return result


@pytest.fixture
def http(sandbox_app: Flask) -> Iterator[httpx.Client]:
    """A plain HTTP client (with a cookie jar, like a browser) against the sandbox."""
    with httpx.Client(transport=httpx.WSGITransport(app=sandbox_app), base_url=BASE_URL) as client:
        yield client
