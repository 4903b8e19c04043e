"""Background work as jobs on one queue (Huey): `@job(kind, ...)` declares a kind of work with
its retry policy; `later(kind, *args)` enqueues it once the request's one commit succeeds.

Where the jobs go (`portal.jobs.queue`):
- `REDIS_URL` set: Redis; separate `portal worker` processes run them (any web process may
  enqueue, any worker may run).
- otherwise the embedded default, a SQLite file in the instance folder: `portal demo` runs a
  consumer in its own process (`start_consumer`), or a `portal worker` does;
- `JOBS_EAGER` (the tests): Huey's own immediate mode, each job run in-process at once.

Arguments are plain values (ids, an address): a job reads what it needs from the database
itself, in an app context with its own session, and commits it itself. Job functions raise on
failure; the queue retries them by their kind's policy, and a kind that gives up leaves the
state the patient sees (its own code's business), never a stack trace.
"""

from __future__ import annotations

from portal.jobs.queue import (
    POLL_AT_MOST,
    Job,
    consumer_of,
    enqueue,
    huey_of,
    init_app,
    job,
    later,
    periodic_kinds,
    run_now,
    start_consumer,
)

__all__ = [
    "POLL_AT_MOST",
    "Job",
    "consumer_of",
    "enqueue",
    "huey_of",
    "init_app",
    "job",
    "later",
    "periodic_kinds",
    "run_now",
    "start_consumer",
]
