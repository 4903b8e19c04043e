"""Serving: several WSGI apps from one process (the demo: portal + sandbox EHRs), and what
every serving process does once its apps are built."""

from __future__ import annotations

import gc
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from portal.web.redact import redact_path


class RedactingRequestHandler(WSGIRequestHandler):
    """Access log without query strings (OAuth codes, states, launch ids) or path tokens."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = redact_path(self.path)
        self.log("info", '"%s %s" %s %s', self.command, path, code, size)


def freeze_startup_objects() -> None:
    """Keep what startup built out of the garbage collector's full passes.

    The modules, the apps and fhirclient's 650 model classes live as long as the process,
    yet every full collection walked them all: a pause of tens of milliseconds, every few
    seconds of a sync's or a busy page's allocations. Call once the apps are built (and,
    under a pre-forking server, before the fork: frozen objects stay shared).
    """
    gc.collect()
    gc.freeze()


def serve_all(apps: Sequence[tuple[str, int, Flask]], jobs_of: Flask | None = None) -> None:
    """Serve each (host, port, app) in its own thread until SIGINT/SIGTERM; `jobs_of`: the
    app whose background jobs this process runs too (the demo: no separate worker)."""
    from portal import jobs

    freeze_startup_objects()
    consumer = jobs.start_consumer(jobs_of) if jobs_of is not None else None
    servers: list[BaseWSGIServer] = [
        make_server(host, port, app, threaded=True, request_handler=RedactingRequestHandler)
        for host, port, app in apps
    ]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    stop = threading.Event()

    def _stop(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)  # after the consumer's own: one stop for all
    signal.signal(signal.SIGINT, _stop)
    stop.wait()
    for s in servers:
        s.shutdown()
    if consumer is not None:
        consumer.stop(graceful=True)  # a job cut short is delivered again next start
