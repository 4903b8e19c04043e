"""What every serving process does: the production entry point builds the app and keeps what
startup built out of the collector's full passes."""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Iterator

import pytest
from flask import Flask

from portal.extensions import db
from portal.serving import freeze_startup_objects


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process's objects go back to the collector


def test_startup_objects_are_frozen(unfrozen) -> None:
    assert gc.get_freeze_count() == 0
    kept = {"a": [1, 2]}
    freeze_startup_objects()
    assert gc.get_freeze_count() > 1000  # modules, classes, the apps...
    assert not any(o is kept for o in gc.get_objects())  # no longer walked by collections


def test_the_wsgi_entry_point_serves_the_portal(unfrozen, database_url: str, monkeypatch) -> None:
    monkeypatch.setenv("PORTAL_DATABASE_URL", database_url)
    sys.modules.pop("portal.wsgi", None)
    wsgi = importlib.import_module("portal.wsgi")
    try:
        assert isinstance(wsgi.app, Flask) and wsgi.app.name == "portal.app"
        assert gc.get_freeze_count() > 0
        assert wsgi.app.test_client().get("/healthz").status_code == 200
    finally:
        db.engine(wsgi.app).dispose()  # no connection left open for later tests
        sys.modules.pop("portal.wsgi", None)
