"""Shared fixtures: one database per run (SQLite file, or a PostgreSQL schema), the portal app.

Set PORTAL_TEST_DATABASE_URL=postgresql+psycopg://root@127.0.0.1:5432/test to run on PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal.app import create_app
from portal.db import Base
from portal.extensions import db
from portal.migrate import upgrade
from portal.web.framing import forget_policy

REPO = Path(__file__).resolve().parent.parent
# The shared Synthea bundles (outside the repository): the tests marked shared_data skip
# without them, except on CI (CI=1), where they fail.
SHARED_FHIR = Path(
    os.environ.get("PORTAL_SHARED_FHIR") or REPO.parent / "shared" / "fhir" / "synthea"
)
# Names PG schemas; the prefix keeps runs from several checkouts on one server apart.
WORKER = (
    os.environ.get("PORTAL_TEST_SCHEMA_PREFIX", "") + os.environ.get("PYTEST_XDIST_WORKER", "main")
).lower()


def pg_base_url() -> str | None:
    url = os.environ.get("PORTAL_TEST_DATABASE_URL", "")
    return url if url.startswith("postgresql") else None


def fresh_pg_schema(name: str) -> str:
    """Drop and create a schema in the test database; return a URL whose search_path is it."""
    base = pg_base_url()
    assert base
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{name}"


@pytest.fixture(scope="session", autouse=True)
def instance_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep keys, secrets and SQLite files of the whole run in a temporary instance folder."""
    path = tmp_path_factory.mktemp("instance")
    old = os.environ.get("PORTAL_INSTANCE_PATH")
    os.environ["PORTAL_INSTANCE_PATH"] = str(path)
    yield path
    if old is None:
        os.environ.pop("PORTAL_INSTANCE_PATH", None)
    else:
        os.environ["PORTAL_INSTANCE_PATH"] = old


@pytest.fixture(scope="session")
def database_url(instance_dir: Path) -> str:
    """The portal database of this run, migrated to head once."""
    if pg_base_url():
        url = fresh_pg_schema(f"portal_test_{WORKER}")
    else:
        url = f"sqlite:///{instance_dir / 'portal-test.db'}"
    engine = sa.create_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def app_config(database_url: str) -> dict[str, Any]:
    """The settings of the test app."""
    return {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
        "WTF_CSRF_ENABLED": False,
        "RATELIMIT_ENABLED": False,
        "MAIL_BACKEND": "outbox",
        "JOBS_EAGER": True,
    }


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    forget_policy()  # the CSP names registered EHRs; each test has its own registry
    app = create_app(app_config(database_url))
    yield app
    close_emptied(app)  # each test starts from empty tables


def close_emptied(app: Flask) -> None:
    """Empty every table of the test database and close the app's connections."""
    with db.engine(app).begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    db.engine(app).dispose()


@pytest.fixture
def make_app(database_url: str) -> Iterator[Callable[..., Flask]]:
    """More apps on the test database (other settings), closed after the test: `config` in
    place of the test app's, and `overrides` on top."""
    made: list[Flask] = []

    def make(config: dict[str, Any] | None = None, **overrides: Any) -> Flask:
        base = app_config(database_url) if config is None else config
        other = create_app({**base, **overrides})
        made.append(other)
        return other

    yield make
    for other in made:
        store = getattr(other.session_interface, "store", None)
        if hasattr(store, "redis"):
            store.redis.close()  # type: ignore[union-attr]
        db.engine(other).dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
