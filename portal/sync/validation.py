"""Strict FHIR validation off the web process's interpreter lock.

fhirclient's strict models cost about a quarter of a millisecond per resource, all of it
Python under the GIL: in a web worker that time is taken from every other request (and from
the sync's own fetching). A small process pool (SYNC_VALIDATION_PROCESSES, default 1; 0 =
validate in the sync's own threads) does it instead. Processes start from a fork server,
which is safe in a threaded process, once per web worker, on first use.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from portal.sync.store import Inspection, inspect

log = logging.getLogger(__name__)

_lock = threading.Lock()
_pools: dict[int, ProcessPoolExecutor] = {}


def _pool(processes: int) -> ProcessPoolExecutor:
    with _lock:
        pool = _pools.get(processes)
        if pool is None:
            context = multiprocessing.get_context("forkserver")
            pool = ProcessPoolExecutor(max_workers=processes, mp_context=context)
            _pools[processes] = pool
        return pool


def submit(processes: int, *args: Any) -> Future[Inspection]:
    """Start `store.inspect(*args)` in a validation process (here, at once, when processes is 0)."""
    if processes > 0:
        try:
            return _pool(processes).submit(inspect, *args)
        except (BrokenProcessPool, RuntimeError, OSError) as exc:
            _discard(processes, exc)
    done: Future[Inspection] = Future()
    done.set_result(inspect(*args))
    return done


def result(future: Future[Inspection], *args: Any) -> Inspection:
    """The inspection's result; if its process died, inspect here instead."""
    try:
        return future.result()
    except (BrokenProcessPool, OSError) as exc:
        for processes, pool in list(_pools.items()):
            if pool is not None:
                _discard(processes, exc)
        return inspect(*args)


def _discard(processes: int, exc: BaseException) -> None:
    log.warning("validation process unavailable (%s); validating in-process", type(exc).__name__)
    with _lock:
        broken = _pools.pop(processes, None)
    if broken is not None:
        broken.shutdown(wait=False, cancel_futures=True)


def shutdown() -> None:
    """Stop the validation processes (tests, CLI exit)."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)
