"""The set-up scripts: ./scripts/test waits for apt's lock (scripts/wait-for-apt) instead of
failing at once when another install holds it."""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

from tests.conftest import REPO

WAIT_FOR_APT = REPO / "scripts" / "wait-for-apt"


def run_wait(locks: list[Path], wait: float) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PORTAL_APT_LOCKS": " ".join(str(p) for p in locks),
        "PORTAL_APT_WAIT": str(wait),
    }
    return subprocess.run(
        [str(WAIT_FOR_APT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_free_locks_do_not_wait(tmp_path: Path) -> None:
    lock = tmp_path / "lock-frontend"
    lock.write_text("")
    started = time.monotonic()
    done = run_wait([lock, tmp_path / "absent"], wait=30)
    assert done.returncode == 0 and done.stderr == ""
    assert time.monotonic() - started < 5


def test_a_held_lock_is_waited_for(tmp_path: Path) -> None:
    lock = tmp_path / "lock-frontend"
    lock.write_text("")
    env = {**os.environ, "PORTAL_APT_LOCKS": str(lock), "PORTAL_APT_WAIT": "60"}
    with lock.open("r+") as held:
        fcntl.lockf(held, fcntl.LOCK_EX)  # as dpkg holds it
        waiting = subprocess.Popen([str(WAIT_FOR_APT)], env=env, stderr=subprocess.PIPE, text=True)
        assert waiting.stderr is not None
        said = waiting.stderr.readline()  # it says so while it waits
        assert "Waiting for another package install to finish" in said
        assert f"process {os.getpid()}" in said  # and who holds the lock
        time.sleep(1)
        assert waiting.poll() is None  # still waiting
        fcntl.lockf(held, fcntl.LOCK_UN)
        assert waiting.wait(timeout=30) == 0
        waiting.stderr.close()


def test_a_lock_held_too_long_says_what_to_do(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    lock.write_text("")
    with lock.open("r+") as held:
        fcntl.lockf(held, fcntl.LOCK_EX)
        done = run_wait([lock], wait=1)
    assert done.returncode == 1
    assert "Another program is installing packages" in done.stderr
    assert "then run ./scripts/test again" in done.stderr and "PORTAL_APT_WAIT" in done.stderr
    assert "PORTAL_CHROMIUM" in done.stderr


def test_scripts_test_waits_before_installing_chromium() -> None:
    lines = (REPO / "scripts" / "test").read_text().splitlines()
    install = next(i for i, line in enumerate(lines) if "install -y -qq chromium" in line)
    waits = next(i for i, line in enumerate(lines) if line.strip() == "./scripts/wait-for-apt")
    assert waits < install
    assert "DPkg::Lock::Timeout" in "\n".join(lines[waits:install])
    assert '"${lock_wait[@]}" install' in lines[install]
