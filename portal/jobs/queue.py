"""The job queue: one Huey instance per app, each declared kind of job a Huey task on it."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from flask import Flask, current_app
from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
EXTENSION = "portal.jobs"


@dataclass(frozen=True)
class Job:
    """A kind of background work and how it is retried: `retries` more attempts, the first
    after `delay` seconds, each later one `backoff` times longer."""

    kind: str
    func: Callable[..., object]
    retries: int = 0
    delay: float = 0
    backoff: float = 1.0
    every_minute: bool = False  # periodic: each consumer's scheduler enqueues it every minute


# Every kind declared (by the modules that do the work), registered on each app's queue.
KINDS: dict[str, Job] = {}


def job(
    kind: str,
    *,
    retries: int = 0,
    delay: float = 0,
    backoff: float = 1.0,
    every_minute: bool = False,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Declare `func` as the job `kind` (it stays a plain function, callable directly);
    `every_minute`: a periodic job, of no arguments, that Huey's scheduler enqueues (in every
    consumer: `portal worker`, the demo's), so it must be safe to run several at once."""

    def declare(func: Callable[P, R]) -> Callable[P, R]:
        if kind in KINDS and KINDS[kind].func is not func:
            raise ValueError(f"job kind {kind!r} is declared twice")
        KINDS[kind] = Job(kind, func, retries, delay, backoff, every_minute)
        return func

    return declare


@dataclass
class _Queue:
    huey: Huey
    tasks: dict[str, Any]


def init_app(app: Flask) -> None:
    """This app's queue (see the package's docstring for where jobs go)."""
    name = f"{app.config['REDIS_KEY_PREFIX']}jobs"
    huey: Huey
    if app.config.get("JOBS_EAGER"):
        huey = MemoryHuey(name, immediate=True, results=False)
    elif app.config.get("REDIS_URL"):
        huey = RedisHuey(name, url=app.config["REDIS_URL"], results=False)
    else:
        path = os.path.join(app.instance_path, "jobs.sqlite3")
        os.makedirs(app.instance_path, exist_ok=True)
        huey = SqliteHuey(name, filename=path, results=False)
    app.extensions[EXTENSION] = _Queue(huey, {})


def huey_of(app: Flask) -> Huey:
    return _state(app).huey


def _state(app: Flask) -> _Queue:
    state: _Queue = app.extensions[EXTENSION]
    for kind in KINDS.values():  # kinds declared after the app was made (imports) too
        if kind.kind not in state.tasks:
            state.tasks[kind.kind] = _register(app, state.huey, kind)
    return state


def _register(app: Flask, huey: Huey, kind: Job) -> Any:
    def run(*args: Any) -> None:
        with app.app_context():
            kind.func(*args)

    run.__name__ = kind.kind
    if kind.every_minute:
        return huey.periodic_task(crontab(minute="*"), retries=kind.retries, name=kind.kind)(run)
    return huey.task(
        retries=kind.retries,
        retry_delay=kind.delay,
        retry_backoff=kind.backoff if kind.backoff != 1.0 else 0,
        name=kind.kind,
    )(run)


def enqueue(app: Flask, kind: str, *args: Any, delay: float | None = None) -> None:
    """Put a job on the queue now, or to run `delay` seconds from now (callers inside a
    request use `later`)."""
    if kind not in KINDS:
        raise KeyError(f"no job kind {kind!r}")
    task = _state(app).tasks[kind]
    if delay:
        task.schedule(args, delay=delay)
    else:
        task(*args)


def later(kind: str, *args: Any) -> None:
    """Enqueue the job once this request's one commit has succeeded (never if it rolls
    back): the job then sees what the request stored."""
    from portal.extensions import db

    if kind not in KINDS:
        raise KeyError(f"no job kind {kind!r}")
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # the proxied app
    db.after_commit(lambda: enqueue(app, kind, *args))


def periodic_kinds() -> list[str]:
    """The periodic jobs declared (`every_minute`)."""
    return sorted(k.kind for k in KINDS.values() if k.every_minute)


def run_now(app: Flask, kind: str, *args: Any) -> None:
    """Run a job here and now, in an app context (commands and sweeps that already hold it)."""
    with app.app_context():
        KINDS[kind].func(*args)


def consumer_of(app: Flask, workers: int) -> Consumer:
    """A consumer of this app's queue: `workers` threads and the scheduler."""
    return _state(app).huey.create_consumer(
        workers=workers, worker_type="thread", max_delay=POLL_AT_MOST
    )


def start_consumer(app: Flask, workers: int = 2) -> Consumer:
    """Run this app's jobs in this process beside other work (`portal demo`; `portal worker`
    runs `consumer_of(...).run()` instead). Call from the main thread."""
    consumer = consumer_of(app, workers)
    consumer.start()
    return consumer


POLL_AT_MOST = 1.0  # seconds an idle in-process worker waits between looks at the queue
