"""End-to-end fixtures: the real `portal demo` servers in a subprocess, and real Chromium.

Like Datasette's browser tests: start the server on free ports, wait until it answers, drive it
with Playwright's role locators and `expect()`.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from portal.sandbox.app import admin_password_file
from portal.sandbox.views.admin import ADMIN_USER
from tests.conftest import WORKER, fresh_pg_schema, pg_base_url

REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / "e2e" / "screenshots"
CHROMIUM = os.environ.get("PORTAL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
]
# A redirect URI nobody serves: the browser test intercepts it, as an app's callback would.
E2E_CLIENT_ID = "e2e-app"
E2E_REDIRECT = "http://127.0.0.1:9/e2e/callback"
E2E_LAUNCH = "http://127.0.0.1:9/e2e/launch"
PHONE = {"width": 390, "height": 844}


@dataclass(frozen=True)
class Demo:
    portal: str
    ehr: str  # first sandbox instance (Riverside), base URL
    ehr2: str  # second sandbox instance (Lakeside)
    instance: Path

    @property
    def fhir(self) -> str:
        return f"{self.ehr}/fhir"

    @property
    def ehr_admin(self) -> httpx.BasicAuth:
        """The first EHR's fault-control credential, as `portal demo` printed it."""
        printed = (self.instance / "demo.log").read_text()
        found = re.search(
            rf"Fault controls: {re.escape(self.ehr)}/admin/faults \(HTTP Basic: (\S+) / (\S+)\)",
            printed,
        )
        assert found, printed
        user, password = found.groups()
        assert user == ADMIN_USER
        assert password == (self.instance / admin_password_file("riverside")).read_text().strip()
        return httpx.BasicAuth(user, password)


def _free_port_pair() -> int:
    """A port p with p and p+1 both free (the demo's two sandbox EHRs)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65000 and all(_is_free(p) for p in (port, port + 1)):
            return int(port)
    raise RuntimeError("no free port pair")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_until_up(urls: list[str], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    pending = list(urls)
    while pending:
        if proc.poll() is not None:
            raise RuntimeError(f"demo exited early:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"demo did not answer {pending}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(pending[0], timeout=2).status_code == 200:
                pending.pop(0)
                continue
        except httpx.HTTPError:
            pass
        time.sleep(0.2)


def mailed_link(demo: Demo, email: str, path: str) -> str:
    """The newest link under `path` in mail to `email`: the demo's console mailer prints mail
    to its log (sent off the request path, so it may take a moment)."""
    mail = re.compile(
        rf"^To: {re.escape(email)}$((?:(?!^----- end of mail).)*)", re.MULTILINE | re.DOTALL
    )
    link = re.compile(rf"{re.escape(demo.portal + path)}\S+")
    deadline = time.monotonic() + 15
    while True:
        log = (demo.instance / "demo.log").read_text()
        found = [m.group(0) for body in mail.findall(log) for m in [link.search(body)] if m]
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no mail to {email} with a {path} link:\n{log[-3000:]}")
        time.sleep(0.1)


def portal_command() -> list[str]:
    return [str(Path(sys.executable).parent / "portal")]


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """README command 1's servers (`portal demo`), on free ports with a fresh instance folder."""
    with running_demo(tmp_path_factory, "demo") as d:
        yield d


@contextmanager
def running_demo(
    tmp_path_factory: pytest.TempPathFactory, name: str, **settings: str
) -> Iterator[Demo]:
    """`portal demo` with its own instance (and database); `settings` are PORTAL_* variables."""
    instance = tmp_path_factory.mktemp(f"{name}-instance")
    env = {**os.environ, "PORTAL_INSTANCE_PATH": str(instance)}
    env.update({f"PORTAL_{key}": value for key, value in settings.items()})
    if pg_base_url():
        env["PORTAL_DATABASE_URL"] = fresh_pg_schema(f"e2e_{name}_{WORKER}")
    port, ehr_port = _free_port_pair(), _free_port_pair()
    while ehr_port in (port, port + 1) or port in (ehr_port, ehr_port + 1):
        ehr_port = _free_port_pair()
    subprocess.run(
        [
            *portal_command(),
            "sandbox",
            "register-client",
            "--slug",
            "riverside",
            "--port",
            str(ehr_port),
            "--client-id",
            E2E_CLIENT_ID,
            "--name",
            "E2E test app",
            "--redirect-uri",
            E2E_REDIRECT,
            "--launch-url",
            E2E_LAUNCH,
            "--scope",
            "openid fhirUser launch launch/patient offline_access patient/*.rs",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    log = instance / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*portal_command(), "demo", "--port", str(port), "--ehr-port", str(ehr_port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        d = Demo(
            portal=f"http://127.0.0.1:{port}",
            ehr=f"http://127.0.0.1:{ehr_port}",
            ehr2=f"http://127.0.0.1:{ehr_port + 1}",
            instance=instance,
        )
        _wait_until_up(
            [f"{d.portal}/healthz", f"{d.ehr}/fhir/metadata", f"{d.ehr2}/fhir/metadata"], proc, log
        )
        yield d
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=PHONE, device_scale_factor=1)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot to e2e/screenshots/ (to look at, not to compare)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
