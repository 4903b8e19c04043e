"""The thread that checks a run's pages while the fetching threads go on fetching.

Checking a page (see store.prepare_page) is pure Python: done in a fetching thread it would
hold back that search's next request, so each run hands its pages to one thread of its own.
The smallest waiting page goes first: a small page, whose references are fetched once it is
checked, does not wait behind a backlog of large ones.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class Checker:
    """One thread running submitted jobs, the smallest first, until closed."""

    def __init__(self, name: str) -> None:
        self._waiting: list[tuple[int, int, Future[Any], Callable[..., Any], tuple[Any, ...]]] = []
        self._order = itertools.count()  # among equal sizes, first come first served
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, size: int, fn: Callable[..., T], *args: Any) -> Future[T]:
        """`fn(*args)` on the checking thread, in order of `size` (then of arrival)."""
        future: Future[T] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("the checker is closed")
            heapq.heappush(self._waiting, (size, next(self._order), future, fn, args))
            self._ready.notify()
        return future

    def close(self) -> None:
        """Run what is waiting, then stop the thread."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join()

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._waiting and not self._closed:
                    self._ready.wait()
                if not self._waiting:
                    return
                _, _, future, fn, args = heapq.heappop(self._waiting)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to whoever asks for the result
                future.set_exception(exc)
