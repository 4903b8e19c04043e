"""Rate limits in Redis, so they hold across workers: REDIS_URL, or RATELIMIT_STORAGE_URI.

Against the real Redis (PORTAL_TEST_REDIS_URL, default redis://127.0.0.1:6379/0); each test
has a key prefix of its own and deletes its keys afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from flask import Flask

from portal.app import create_app
from portal.extensions import db

REDIS_URL = os.environ.get("PORTAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def store() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # a clear failure, never a skip
        pytest.fail(f"these tests need Redis at {REDIS_URL} (redis-server): {exc}")
    yield client
    client.close()


@pytest.fixture
def prefix(store: redis.Redis) -> Iterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    name = f"http_test_{uuid.uuid4().hex[:12]}"
    yield name
    keys = list(store.scan_iter(match=f"*{name}*"))
    if keys:
        store.delete(*keys)


def keys_of(store: redis.Redis, prefix: str) -> list[bytes]:
    return list(store.scan_iter(match=f"*{prefix}*"))


@contextmanager
def portal(database_url: str, **config: object) -> Iterator[Flask]:
    app = create_app(
        {"TESTING": True, "DATABASE_URL": database_url, "LAUNCH_RATE_LIMIT": "2 per minute"}
        | config
    )
    try:
        yield app
    finally:
        db.engine(app).dispose()


def launches(app: Flask, times: int) -> list[int]:
    client = app.test_client()
    return [client.get("/launch").status_code for _ in range(times)]


def test_the_documented_storage_setting_starts_and_counts_in_redis(
    database_url: str, store: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAL_RATELIMIT_STORAGE_URI", REDIS_URL)
    monkeypatch.setenv("PORTAL_RATELIMIT_KEY_PREFIX", prefix)
    with portal(database_url) as app:  # raised "'redis' prerequisite not available" before
        assert launches(app, 3) == [400, 400, 429]
    assert keys_of(store, prefix)


def test_redis_url_is_the_one_setting_for_the_limits(
    database_url: str, store: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAL_REDIS_URL", REDIS_URL)
    with portal(database_url, RATELIMIT_KEY_PREFIX=prefix) as app:
        assert app.config["RATELIMIT_STORAGE_URI"] == REDIS_URL
        assert launches(app, 3) == [400, 400, 429]
    assert keys_of(store, prefix)


def test_the_storage_setting_overrides_redis_url_and_memory_is_the_default(
    database_url: str, store: redis.Redis, prefix: str
) -> None:
    with portal(
        database_url,
        REDIS_URL=REDIS_URL,
        RATELIMIT_STORAGE_URI="memory://",
        RATELIMIT_KEY_PREFIX=prefix,
    ) as app:
        assert launches(app, 3) == [400, 400, 429]
    assert not keys_of(store, prefix)
    with portal(database_url) as app:
        assert app.config["RATELIMIT_STORAGE_URI"] == "memory://"


WORKER = """
from portal.app import create_app
from portal.extensions import db
app = create_app({"TESTING": True})
print(app.test_client().get("/launch").status_code)
db.engine(app).dispose()
"""


def test_two_workers_share_one_limit(
    database_url: str, store: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two launches in this process, the third in another one: over the limit all the same."""
    env = {
        "PORTAL_REDIS_URL": REDIS_URL,
        "PORTAL_RATELIMIT_KEY_PREFIX": prefix,
        "PORTAL_LAUNCH_RATE_LIMIT": "2 per minute",
        "PORTAL_DATABASE_URL": database_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with portal(database_url) as app:
        assert launches(app, 2) == [400, 400]
    other = subprocess.run(
        [sys.executable, "-c", WORKER], env=os.environ, capture_output=True, text=True, check=True
    )
    assert other.stdout.split() == ["429"], other.stderr
    # With memory:// the other worker would have let it through.
    monkeypatch.setenv("PORTAL_RATELIMIT_STORAGE_URI", "memory://")
    alone = subprocess.run(
        [sys.executable, "-c", WORKER], env=os.environ, capture_output=True, text=True, check=True
    )
    assert alone.stdout.split() == ["400"], alone.stderr
