"""The production server settings (gunicorn.conf.py): they load, and gunicorn's access log
has neither query strings nor the tokens of token-bearing paths."""

from __future__ import annotations

import os
import runpy
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from gunicorn.config import Config

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "gunicorn.conf.py"


def load_conf() -> dict[str, Any]:
    """The conf as gunicorn reads it: every known setting validated by gunicorn itself."""
    values = runpy.run_path(str(CONF))
    config = Config()
    for name, value in values.items():
        if name in config.settings:
            config.set(name, value)
    return {name: config.settings[name].get() for name in config.settings}


def test_the_conf_loads_with_its_documented_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PORTAL_BIND", "PORTAL_WORKERS", "PORTAL_THREADS"):
        monkeypatch.delenv(name, raising=False)
    conf = load_conf()
    assert conf["worker_class"] == "gthread"
    assert conf["workers"] == 2 and conf["threads"] == 8
    assert conf["keepalive"] > 60  # longer than an AWS ALB's idle timeout
    assert conf["timeout"] >= 30 and 0 < conf["graceful_timeout"] <= conf["timeout"]
    assert conf["bind"] == ["127.0.0.1:8000"]
    assert conf["accesslog"] == "-"
    assert conf["control_socket_disable"] is True
    assert conf["logger_class"].__name__ == "RedactingLogger"
    for leaky in ("%(r)s", "%(q)s", "%(f)s", "{raw_uri}e", "{query_string}e"):
        assert leaky not in conf["access_log_format"]


def test_the_conf_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_BIND", "0.0.0.0:9000")
    monkeypatch.setenv("PORTAL_WORKERS", "4")
    monkeypatch.setenv("PORTAL_THREADS", "16")
    conf = load_conf()
    assert conf["bind"] == ["0.0.0.0:9000"]
    assert conf["workers"] == 4 and conf["threads"] == 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_gunicorns_access_log_has_no_token_and_no_query(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PORTAL_BIND": f"127.0.0.1:{port}",
        "PORTAL_WORKERS": "1",
        "PORTAL_THREADS": "2",
        "PORTAL_DATABASE_URL": database_url,
    }
    log = tmp_path / "gunicorn.log"
    gunicorn = Path(sys.executable).parent / "gunicorn"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(gunicorn), "-c", str(CONF), "portal.wsgi:app"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        answer = httpx.get(f"{base}/reset/SECRET-TOKEN?x=1", headers={"Referer": f"{base}/?y=2"})
        assert answer.status_code == 400  # an unknown reset token, told in words
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()
    assert "GET /reset/[redacted] HTTP/1.1" in text, text
    assert "SECRET-TOKEN" not in text and "x=1" not in text and "y=2" not in text, text
