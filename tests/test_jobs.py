"""portal.jobs: background work on the job queue (Huey), enqueued after the request's one
commit, retried by its kind's policy, run by a consumer of the app's queue."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask, current_app

from portal import jobs
from portal.extensions import db
from portal.jobs import queue
from portal.models import Account
from tests.phr import factories as f

SEEN: list[tuple[str, object]] = []


@pytest.fixture
def kind() -> Iterator[Callable[..., str]]:
    """Declare test job kinds (removed afterwards)."""
    made: list[str] = []

    def declare(func: Callable[..., object], **policy: float) -> str:
        name = f"test.{func.__name__}.{len(queue.KINDS)}"
        jobs.job(name, **policy)(func)  # type: ignore[arg-type]
        made.append(name)
        return name

    SEEN.clear()
    yield declare
    for name in made:
        queue.KINDS.pop(name, None)


def note(value: object) -> None:
    SEEN.append((current_app.name, value))


def test_a_committed_request_enqueues_once_after_its_commit(
    app: Flask, kind: Callable[..., str]
) -> None:
    name = kind(note)

    @app.post("/test-later")
    def later_view() -> str:
        account = f.make_account(db.session, "Ana")
        db.session.flush()
        jobs.later(name, account.id)
        assert SEEN == []  # not before the commit
        return "ok"

    assert app.test_client().post("/test-later").status_code == 200
    with app.app_context():
        stored = db.session.scalar(sa.select(Account.id))
    assert [(app.name, stored)] == SEEN  # once, in an app context, after the commit


def test_a_rolled_back_request_enqueues_nothing(app: Flask, kind: Callable[..., str]) -> None:
    name = kind(note)

    @app.post("/test-fails")
    def failing_view() -> tuple[str, int]:
        f.make_account(db.session, "Ana")
        jobs.later(name, 1)
        return "no", 400

    assert app.test_client().post("/test-fails").status_code == 400
    assert SEEN == []
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Account)) == 0


def test_an_unknown_kind_is_refused_at_once(app: Flask) -> None:
    with app.test_request_context(), pytest.raises(KeyError):
        jobs.later("no.such.kind", 1)


def test_each_kind_is_a_task_with_its_retry_policy(app: Flask, kind: Callable[..., str]) -> None:
    name = kind(note, retries=4, delay=30, backoff=2)
    task = queue._state(app).tasks[name].s(1)  # a message as the queue would carry it
    assert (task.retries, task.retry_delay, task.retry_backoff) == (4, 30, 2)
    mail = queue._state(app).tasks["mail.signup"].s("a@example.org", "t")  # the portal's own
    assert mail.retries > 0 and mail.retry_delay > 0


def flaky(tag: str) -> None:
    """Fails the first time for each tag, then notes it."""
    if not any(value == ("tried", tag) for _, value in SEEN):
        SEEN.append(("", ("tried", tag)))
        raise RuntimeError("not yet")
    note(tag)


def test_a_consumer_runs_the_queue_and_retries_a_failed_job(
    make_app: Callable[..., Flask], kind: Callable[..., str], tmp_path: Path
) -> None:
    """The embedded default: a SQLite queue in the instance folder, run by a consumer in
    another thread (as `portal demo` runs one; `portal worker` runs the same)."""
    other = make_app(JOBS_EAGER=False)
    other.instance_path = str(tmp_path)
    jobs.init_app(other)  # again, for the instance folder of this test
    name = kind(flaky, retries=2, delay=0.1)
    assert type(jobs.huey_of(other)).__name__ == "SqliteHuey"
    jobs.enqueue(other, name, "a")
    assert SEEN == []  # queued, not run: nothing consumes yet
    handlers = {
        sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        consumer = jobs.start_consumer(other, workers=1)
    finally:  # the consumer sets the process's signal handlers (serve_all then sets its own)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    deadline = time.monotonic() + 15
    while (other.name, "a") not in SEEN and time.monotonic() < deadline:
        time.sleep(0.05)
    consumer.stop(graceful=True)
    assert [("", ("tried", "a")), (other.name, "a")] == SEEN  # failed once, retried, done
