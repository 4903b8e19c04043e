"""portal.jobs: work after the request, in an app context, in a bounded pool or inline."""

from __future__ import annotations

import logging
import threading

import pytest
from flask import Flask, current_app

from portal import jobs


def test_eager_runs_inline_in_an_app_context(app: Flask) -> None:
    seen: list[tuple[str, object]] = []
    assert jobs.submit(app, lambda x: seen.append((current_app.name, x)), 42) is None
    assert seen == [(app.name, 42)]


def test_otherwise_runs_in_a_pool_thread_in_an_app_context(app: Flask) -> None:
    app.config["JOBS_EAGER"] = False
    seen: list[tuple[str, str]] = []

    def work(tag: str) -> None:
        seen.append((current_app.name, threading.current_thread().name + tag))

    future = jobs.submit(app, work, "!")
    assert future is not None
    future.result(timeout=10)
    [(name, thread)] = seen
    assert name == app.name and thread.startswith("portal-job") and thread.endswith("!")
    assert jobs._executor(app)._max_workers == app.config["JOBS_MAX_WORKERS"]


def test_a_failing_job_is_logged_not_raised(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    app.config["JOBS_EAGER"] = False

    def broken() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="portal.jobs"):
        future = jobs.submit(app, broken)
        assert future is not None
        assert future.result(timeout=10) is None
    assert "background job" in caplog.text and "broken" in caplog.text
