"""Sign-in burst against the real portal: do page views keep their latency while passwords
are being checked, and how much memory does the server take?

Starts the portal under gunicorn (the production command of the README: 2 workers x 8
threads) on a free loopback port, with a temporary instance folder and SQLite database, and
accounts made directly through portal.accounts.service. Then, from several client threads,
150 sign-ins spread over ~15 s (each: fetch the form for its CSRF token, then the timed POST),
while another thread keeps fetching the start page. Prints sign-in and page-view latencies
(page views also idle, before the burst, for comparison) and the server's peak RSS, and last
`signin_p95_ms=<x> page_p95_ms=<y> page_idle_p95_ms=<z> peak_rss_mib=<w>`.

The per-address sign-in limit is switched off (every request comes from 127.0.0.1); all else
is the default configuration, argon2id parameters and PASSWORD_MAX_CONCURRENT_VERIFIES
included. Client and server share this machine's cores.

Usage: .venv/bin/python benchmarks/signin.py [--max-verifies N] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ACCOUNTS = 30
SIGNINS = 150
BURST_SECONDS = 15.0
CLIENT_THREADS = 6
IDLE_SECONDS = 3.0
PAGE = "/"
PASSWORD = "benchmark horse battery staple"  # noqa: S105  # the demo accounts' password
DEADLINE = 120.0  # seconds for the whole burst, whatever happens
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def make_accounts(url: str) -> list[str]:
    from portal.accounts import service
    from portal.app import create_app
    from portal.extensions import db
    from portal.migrate import upgrade

    app = create_app({"DATABASE_URL": url, "RATELIMIT_ENABLED": False})
    upgrade(db.engine(app))
    emails = [f"person{i}@example.org" for i in range(ACCOUNTS)]
    with app.app_context():
        for email in emails:
            service.create_account(db.session, email, PASSWORD)
        db.session.commit()
    db.engine(app).dispose()
    return emails


def tree(pid: int) -> list[int]:
    """`pid` and its children (gunicorn's master and workers)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            pids.append(int(stat.parent.name))
    return pids


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """Peak summed RSS of the server's processes, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, sum(rss_kib(p) for p in tree(self.pid)))


def wait_until_up(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not answer:\n{log.read_text()[-3000:]}")


def page_views(base: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop.is_set():
            start = time.perf_counter()
            answer = client.get(PAGE)
            out.append(time.perf_counter() - start)
            if answer.status_code != 200:
                raise SystemExit(f"{PAGE}: HTTP {answer.status_code}")
            time.sleep(0.02)


def burst(base: str, emails: list[str]) -> tuple[list[float], int]:
    """Sign-in POST latencies, and how many signed in."""
    times: list[float] = []
    ok = 0
    lock = threading.Lock()
    next_index = iter(range(SIGNINS))
    start = time.monotonic()
    gap = BURST_SECONDS / SIGNINS

    def client_thread() -> None:
        nonlocal ok
        while True:
            with lock:
                i = next(next_index, None)
            if i is None or time.monotonic() - start > DEADLINE:
                return
            time.sleep(max(0.0, start + i * gap - time.monotonic()))  # its slot in the burst
            with httpx.Client(base_url=base, timeout=30) as client:
                form = client.get("/signin")
                token = CSRF.search(form.text)
                assert token, "no CSRF token on the sign-in form"
                data = {
                    "csrf_token": token.group(1),
                    "email": emails[i % len(emails)],
                    "password": PASSWORD,
                }
                began = time.perf_counter()
                answer = client.post("/signin", data=data)
                took = time.perf_counter() - began
            with lock:
                times.append(took)
                ok += answer.status_code == 302

    threads = [threading.Thread(target=client_thread) for _ in range(CLIENT_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--max-verifies", type=int, default=None, help="per worker")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PORTAL_INSTANCE_PATH"] = tmp
        url = f"sqlite:///{tmp}/bench.db"
        emails = make_accounts(url)
        from portal.config import DEFAULTS

        max_verifies = args.max_verifies or DEFAULTS["PASSWORD_MAX_CONCURRENT_VERIFIES"]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "PORTAL_DATABASE_URL": url,
            "PORTAL_SECRET_KEY": "benchmark-secret-key-0123456789-abcdefghijkl",
            "PORTAL_RATELIMIT_ENABLED": "false",
            "PORTAL_PASSWORD_MAX_CONCURRENT_VERIFIES": str(max_verifies),
        }
        log = Path(tmp) / "server.log"
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        command = [gunicorn, "--workers", str(args.workers), "--threads", "8"]
        command += ["--bind", f"127.0.0.1:{port}", "portal.wsgi:app"]
        with log.open("wb") as out:
            # In the temporary folder: no gunicorn.conf.py of the working directory applies.
            proc = subprocess.Popen(command, env=env, cwd=tmp, stdout=out, stderr=out)
        try:
            wait_until_up(base, proc, log)
            sampler = Sampler(proc.pid)
            sampler.start()

            idle: list[float] = []
            stop = threading.Event()
            watcher = threading.Thread(target=page_views, args=(base, stop, idle))
            watcher.start()
            time.sleep(IDLE_SECONDS)
            stop.set()
            watcher.join()
            idle_rss, sampler.peak = sampler.peak, 0

            during: list[float] = []
            stop = threading.Event()
            watcher = threading.Thread(target=page_views, args=(base, stop, during))
            watcher.start()
            began = time.monotonic()
            signins, ok = burst(base, emails)
            elapsed = time.monotonic() - began
            stop.set()
            watcher.join()
            sampler.stop.set()
            sampler.join()
            worker_peak = max(rss_kib(p, "VmHWM") for p in tree(proc.pid)[1:])
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    print(
        f"server: gunicorn, {args.workers} workers x 8 threads, SQLite; argon2id m=19 MiB t=2"
        f" p=1, at most {max_verifies} at once per worker"
    )
    print(
        f"sign-ins: {len(signins)} ({ok} signed in) in {elapsed:.1f} s from {CLIENT_THREADS}"
        f" client threads, {ACCOUNTS} accounts"
    )
    print(f"{'':22} {'n':>5} {'median ms':>10} {'p95 ms':>8}")
    for name, values in (
        ("sign-in (POST)", signins),
        (f"page {PAGE} idle", idle),
        (f"page {PAGE} in burst", during),
    ):
        print(
            f"{name:22} {len(values):5d} {statistics.median(values) * 1e3:10.1f}"
            f" {p95(values) * 1e3:8.1f}"
        )
    print(
        f"server RSS, all processes: {idle_rss / 1024:.0f} MiB before the burst,"
        f" {sampler.peak / 1024:.0f} MiB at its peak; largest worker {worker_peak / 1024:.0f} MiB"
    )
    if ok != SIGNINS:
        raise SystemExit(f"only {ok} of {SIGNINS} sign-ins succeeded")
    print(
        f"signin_p95_ms={p95(signins) * 1e3:.1f} page_p95_ms={p95(during) * 1e3:.1f}"
        f" page_idle_p95_ms={p95(idle) * 1e3:.1f} peak_rss_mib={sampler.peak / 1024:.0f}"
    )


if __name__ == "__main__":
    main()
