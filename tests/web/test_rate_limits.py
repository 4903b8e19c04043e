"""Launch, callback and connect are rate limited per client address, as sign-in is; the
address comes from X-Forwarded-For only through the configured number of trusted proxies."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask

from portal.app import create_app
from portal.extensions import db

LIMITED = ["/launch", "/oauth/callback", "/connect/1"]


@pytest.fixture
def limited(database_url: str) -> Iterator[Flask]:
    """An app with the limits on, two launches a minute, behind one trusted proxy."""
    with portal(database_url, TRUSTED_PROXY_COUNT=1) as app:
        yield app


@contextmanager
def portal(database_url: str, **config: object) -> Iterator[Flask]:
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "RATELIMIT_ENABLED": True,
            "LAUNCH_RATE_LIMIT": "2 per minute",
            **config,
        }
    )
    try:
        yield app
    finally:
        db.engine(app).dispose()


def codes(app: Flask, path: str, forwarded_for: str, times: int) -> list[int]:
    client = app.test_client()
    headers = {"X-Forwarded-For": forwarded_for}
    return [client.get(path, headers=headers).status_code for _ in range(times)]


@pytest.mark.parametrize("path", LIMITED)
def test_each_client_behind_the_proxy_has_its_own_bucket(limited: Flask, path: str) -> None:
    first = codes(limited, path, "203.0.113.1", 3)
    assert 429 not in first[:2] and first[2] == 429
    assert codes(limited, path, "203.0.113.2", 1) != [429]  # someone else behind the proxy


def test_the_limit_page_is_in_words(limited: Flask) -> None:
    codes(limited, "/launch", "203.0.113.7", 2)
    page = limited.test_client().get("/launch", headers={"X-Forwarded-For": "203.0.113.7"})
    assert page.status_code == 429
    assert "Wait a minute, then try again" in page.text
    assert "Too Many Requests" not in page.text and "per 1 minute" not in page.text
    assert "no-store" in page.headers["Cache-Control"]


def test_without_trusted_proxies_x_forwarded_for_is_ignored(database_url: str) -> None:
    with portal(database_url) as app:  # TRUSTED_PROXY_COUNT defaults to 0
        assert app.config["TRUSTED_PROXY_COUNT"] == 0
        assert codes(app, "/launch", "198.51.100.1", 2)[1] != 429
        # A new forged address each time does not escape the connecting address's bucket.
        assert codes(app, "/launch", "198.51.100.2", 1) == [429]
        assert codes(app, "/launch", "198.51.100.3", 1) == [429]


def test_the_trusted_proxy_count_comes_from_the_environment(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAL_TRUSTED_PROXY_COUNT", "1")
    with portal(database_url) as app:
        assert app.config["TRUSTED_PROXY_COUNT"] == 1
        assert codes(app, "/launch", "192.0.2.1", 3)[2] == 429
        assert codes(app, "/launch", "192.0.2.2", 1) != [429]


@pytest.mark.parametrize("bad", [-1, "two", 1.5])
def test_a_bad_trusted_proxy_count_is_refused(bad: object) -> None:
    from portal.config import ConfigError

    with pytest.raises(ConfigError, match="TRUSTED_PROXY_COUNT"):
        create_app({"DATABASE_URL": "sqlite://", "TRUSTED_PROXY_COUNT": bad})
