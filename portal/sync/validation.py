"""Strict FHIR validation off the web process's interpreter lock.

fhirclient's strict models cost a tenth to a quarter of a millisecond per resource, all of
it Python under the GIL: in a web worker that time is taken from every other request (and from
the sync's own fetching). A small process pool (SYNC_VALIDATION_PROCESSES, default 1; 0 =
validate in the sync's own threads) does it instead, together with the rest of a page's CPU
work (query columns, JSON encoding; see `store.prepare_page`). Processes start from a fork
server, which is safe in a threaded process, once per web worker, on first use; each loads
fhirclient's models once and remembers their property lists (see `_start`).
"""

from __future__ import annotations

import heapq
import importlib
import itertools
import logging
import multiprocessing
import pkgutil
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any, TypeVar

import fhirclient.models
from fhirclient.models.fhirabstractbase import FHIRAbstractBase

log = logging.getLogger(__name__)

T = TypeVar("T")

_lock = threading.Lock()
_pools: dict[int, ProcessPoolExecutor] = {}


def _pool(processes: int) -> ProcessPoolExecutor:
    with _lock:
        pool = _pools.get(processes)
        if pool is None:
            context = multiprocessing.get_context("forkserver")
            pool = ProcessPoolExecutor(
                max_workers=processes, mp_context=context, initializer=_start
            )
            _pools[processes] = pool
        return pool


def submit(processes: int, fn: Callable[..., T], *args: Any) -> Future[T]:
    """Start `fn(*args)` in a validation process (here, at once, when processes is 0).

    `fn` must be a module-level function and `args` picklable.
    """
    if processes > 0:
        try:
            return _pool(processes).submit(fn, *args)
        except (BrokenProcessPool, RuntimeError, OSError) as exc:
            _discard(processes, exc)
    done: Future[T] = Future()
    try:
        done.set_result(fn(*args))
    except Exception as exc:  # handed to whoever asks for the result, as a pool would
        done.set_exception(exc)
    return done


class Backlog:
    """Jobs for the validation processes, the smallest first, one per process at a time:
    a small page (whose references are to be fetched) does not wait behind a backlog of
    large ones."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._lock = threading.Lock()
        self._waiting: list[tuple[int, int, Future[Any], Callable[..., Any], tuple[Any, ...]]] = []
        self._order = itertools.count()
        self._sent = 0

    def submit(self, size: int, fn: Callable[..., T], *args: Any) -> Future[T]:
        """`submit(processes, fn, *args)`, in order of `size` (then of arrival)."""
        if self.processes <= 0 or size <= 0:
            return submit(0, fn, *args)
        future: Future[T] = Future()
        with self._lock:
            heapq.heappush(self._waiting, (size, next(self._order), future, fn, args))
        self._send()
        return future

    def _send(self) -> None:
        while True:
            with self._lock:
                if not self._waiting or self._sent >= self.processes:
                    return
                _, _, future, fn, args = heapq.heappop(self._waiting)
                self._sent += 1
            if future.set_running_or_notify_cancel():
                submit(self.processes, fn, *args).add_done_callback(partial(self._done, future))
            else:
                self._done(future, None)

    def _done(self, future: Future[Any], sent: Future[Any] | None) -> None:
        with self._lock:
            self._sent -= 1
        if sent is not None:
            if sent.cancelled():  # its pool was discarded: `result` checks here instead
                future.set_exception(BrokenProcessPool("the validation process went away"))
            elif (exc := sent.exception()) is not None:
                future.set_exception(exc)
            else:
                future.set_result(sent.result())
        self._send()


def result(future: Future[T], fn: Callable[..., T], *args: Any) -> T:
    """The future's result; if its process died, run `fn(*args)` here instead."""
    try:
        return future.result()
    except (BrokenProcessPool, OSError) as exc:
        for processes, pool in list(_pools.items()):
            if pool is not None:
                _discard(processes, exc)
        return fn(*args)


def _start() -> None:
    """Set up a validation process: load every fhirclient model, and remember each model's
    property list.

    fhirclient asks every element it reads for its class's property list, and every time
    builds it anew (a list per class up the hierarchy, with imports). The list depends on
    the class alone, so the first one built is kept and a copy handed out: the same checks,
    a good part cheaper. Only in these processes: the web process's fhirclient is untouched.
    """
    for module in pkgutil.iter_modules(fhirclient.models.__path__):
        importlib.import_module(f"fhirclient.models.{module.name}")
    classes: list[type] = [FHIRAbstractBase]
    seen: set[type] = set()
    while classes:
        cls = classes.pop()
        if cls in seen:
            continue
        seen.add(cls)
        classes.extend(cls.__subclasses__())
        # Every class, inheriting or not (parents first: `build` may be a parent's wrapper).
        build = cls.elementProperties  # type: ignore[attr-defined]  # every model has it
        cls.elementProperties = _remembered(cls, build)  # type: ignore[attr-defined]


def _remembered(cls: type, build: Callable[[Any], list[Any]]) -> Callable[[Any], list[Any]]:
    kept: list[list[Any]] = []

    def elementProperties(self: Any) -> list[Any]:  # fhirclient names it so
        if type(self) is not cls:
            return build(self)  # a subclass extends it: its own method keeps the result
        if not kept:
            kept.append(build(self))
        return list(kept[0])  # callers may extend what they get

    return elementProperties


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
