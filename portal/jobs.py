"""Background work off the request path, until a job queue arrives: `submit(app, func, *args)`.

Work runs in a small bounded thread pool of this process (created on first use, so a pre-forking
server creates it in each worker), inside an app context; it opens its own database session
(`db.sessionmaker(app)()`) and commits it itself. Views submit from `db.after_commit`, so the
work starts only once the request's commit has succeeded. With JOBS_EAGER (tests) it runs
inline, at once. Arguments are plain values, so the same calls can later go to a real queue.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def submit(app: Flask, func: Callable[..., object], *args: Any) -> Future[None] | None:
    """Run `func(*args)` in an app context of `app`: inline when JOBS_EAGER, else in the pool."""
    if app.config.get("JOBS_EAGER"):
        with app.app_context():
            func(*args)
        return None
    return _executor(app).submit(_run, app, func, args)


def _executor(app: Flask) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            workers = max(1, int(app.config.get("JOBS_MAX_WORKERS", 2)))
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="portal-job")
        return _pool


def _run(app: Flask, func: Callable[..., object], args: tuple[Any, ...]) -> None:
    try:
        with app.app_context():
            func(*args)
    except Exception:  # nobody waits for the future: say it here (the name, never the args)
        log.exception("background job %s failed", getattr(func, "__qualname__", func))
