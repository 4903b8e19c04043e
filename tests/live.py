"""A LIVE sandbox EHR for the SMART client and sync tests: a real HTTP server in a thread.

The portal's own code (httpx, authlib) talks to it over TCP exactly as it would to an EHR.
The patient's browser is an httpx client with a cookie jar that signs in and consents.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask import Flask
from joserfc.jwk import RSAKey
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from portal.db import transaction
from portal.extensions import db
from portal.models import Account, EhrServer
from portal.registry import upsert_ehr
from portal.sandbox.accounts import create_demo_users, register_client
from portal.sandbox.app import create_sandbox_app
from portal.sandbox.db import sdb
from portal.sandbox.fhir.store import LoadResult, load_bundle, read_bundle_file
from portal.sandbox.setup import PORTAL_CLIENT_SCOPE
from portal.smart import discovery
from portal.smart.crypto import TokenCipher
from portal.smart.keys import ASSERTION_ALG, public_jwks
from portal.smart.oauth import LaunchResult, begin, complete, new_browser_binding
from portal.smart.settings import SmartSettings, install
from portal.smart.tokens import connect, set_client_secret
from tests.sandbox.conftest import DATA, admin_auth, sandbox_database
from tests.sandbox.flows import consent, form_with, login, patient_login

REDIRECT_URI = "http://127.0.0.1:5000/oauth/callback"
LAUNCH_URL = "http://127.0.0.1:5000/launch"
LIVE_BUNDLES = ("christin_stiedemann", "arron_schamberger")
CLIENT_IDS = {
    "public": "portal-public",
    "confidential-symmetric": "portal-symmetric",
    "confidential-asymmetric": "portal-asymmetric",
}
CLIENT_SECRET = "symmetric-secret-for-the-live-sandbox-0123456789"


class _QuietHandler(WSGIRequestHandler):
    """The EHR's access log would print codes and states in URLs: keep it quiet."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class _Dispatcher:
    """The WSGI app behind the server, set once the port (and so BASE_URL) is known."""

    app: Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)


@dataclass
class LiveEhr:
    app: Flask
    server: BaseWSGIServer
    base_url: str
    patients: dict[str, LoadResult] = field(default_factory=dict)

    @property
    def fhir_base(self) -> str:
        return self.base_url + "/fhir"

    @property
    def token_url(self) -> str:
        return self.base_url + "/auth/token"

    def patient(self, name: str) -> str:
        patient_id = self.patients[name].patient_id
        assert patient_id
        return patient_id

    @property
    def admin(self) -> httpx.BasicAuth:
        """The fault controls' credential (generated into the instance folder)."""
        return admin_auth(self.app)

    def set_fault(self, name: str, value: int = 1, remaining: int | None = None) -> None:
        answer = httpx.post(
            self.base_url + "/admin/faults",
            json={name: {"value": value, "remaining": remaining}},
            auth=self.admin,
        )
        assert answer.status_code == 200, answer.text

    def clear_faults(self) -> None:
        httpx.delete(self.base_url + "/admin/faults", auth=self.admin)

    def sandbox_session(self) -> Any:
        return transaction(sdb.sessionmaker(self.app))


def start_live_ehr(
    instance_dir: Path, slug: str, bundles: tuple[str, ...], client_key: RSAKey
) -> LiveEhr:
    """Serve a fresh sandbox instance on a free port, with the portal registered three ways."""
    dispatcher = _Dispatcher()
    server = make_server("127.0.0.1", 0, dispatcher, threaded=True, request_handler=_QuietHandler)
    base_url = f"http://127.0.0.1:{server.server_port}"
    url, schema = sandbox_database(slug, instance_dir)
    app = create_sandbox_app(
        {
            "TESTING": True,
            "NAME": f"Live {slug}",
            "SLUG": slug,
            "BASE_URL": base_url,
            "DATABASE_URL": url,
            "DB_SCHEMA": schema,
            "DEMO": True,
            "FAULTS_ENABLED": True,
        }
    )
    dispatcher.app = app
    live = LiveEhr(app, server, base_url)
    with app.app_context(), live.sandbox_session() as session:
        for name in bundles:
            live.patients[name] = load_bundle(session, read_bundle_file(DATA / f"{name}.json.gz"))
        create_demo_users(session)
        common = {
            "name": "My Health Record (patient portal)",
            "redirect_uris": [REDIRECT_URI],
            "launch_url": LAUNCH_URL,
            "scope": PORTAL_CLIENT_SCOPE,
        }
        register_client(session, client_id=CLIENT_IDS["public"], client_type="public", **common)
        register_client(
            session,
            client_id=CLIENT_IDS["confidential-symmetric"],
            client_type="confidential-symmetric",
            secret=CLIENT_SECRET,
            **common,
        )
        register_client(
            session,
            client_id=CLIENT_IDS["confidential-asymmetric"],
            client_type="confidential-asymmetric",
            jwks=public_jwks(client_key),
            **common,
        )
    thread = threading.Thread(target=server.serve_forever, name=f"live-{slug}", daemon=True)
    thread.start()
    return live


class CuttingProxy:
    """A real local HTTP server in front of a live EHR that cuts connections mid-page.

    Each request is passed on to the EHR (the EHR's own URLs in the answer become the proxy's,
    so next links come back here). To the first `times` requests (all when None) whose path
    and query `cut` matches, it sends the status line, the headers and half of the body, then
    resets the connection (RST), as a failing load balancer would.
    """

    def __init__(self, live: LiveEhr, cut: Callable[[str], bool], times: int | None = None) -> None:
        self.upstream = live.base_url
        self.cut = cut
        self.times = times
        self.cuts: list[str] = []  # the requests cut
        self.passed: list[str] = []  # the requests answered in full
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def fhir_base(self) -> str:
        return self.base_url + "/fhir"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, sock: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
        length = int(headers.get("Content-Length", headers.get("content-length", "0")))
        while len(body) < length:
            body += sock.recv(65536)
        passed = {
            k: v
            for k, v in headers.items()
            if k.lower() not in ("host", "connection", "accept-encoding", "content-length")
        }
        answer = httpx.request(
            method, self.upstream + target, headers=passed, content=body or None, timeout=30
        )
        content = answer.content.replace(self.upstream.encode(), self.base_url.encode())
        lines = [f"HTTP/1.1 {answer.status_code} {answer.reason_phrase}"]
        for name in ("Content-Type", "Location", "Retry-After", "Cache-Control"):
            if name in answer.headers:
                value = answer.headers[name].replace(self.upstream, self.base_url)
                lines.append(f"{name}: {value}")
        lines += [f"Content-Length: {len(content)}", "Connection: close", "", ""]
        response = "\r\n".join(lines).encode("latin-1") + content
        with self._lock:
            cutting = self.cut(target) and (self.times is None or len(self.cuts) < self.times)
            (self.cuts if cutting else self.passed).append(target)
        if not cutting:
            sock.sendall(response)
            return
        sock.sendall(response[: len(response) - len(content) // 2])
        # SO_LINGER 0: close() sends RST, not FIN: "connection reset by peer" at the portal
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def stop_live_ehr(live: LiveEhr) -> None:
    live.server.shutdown()
    live.server.server_close()
    sdb.engine(live.app).dispose()


# tests/smart and tests/sync each import these fixtures into their conftest; one server
# (and one key) serves both, stopped when the last user is done.
_shared: dict[str, Any] = {}


@pytest.fixture(scope="session")
def client_key() -> RSAKey:
    if "key" not in _shared:
        _shared["key"] = RSAKey.generate_key(
            2048, {"alg": ASSERTION_ALG, "use": "sig"}, auto_kid=True
        )
    key: RSAKey = _shared["key"]
    return key


@pytest.fixture(scope="session")
def live_ehr(instance_dir: Path, client_key: RSAKey) -> Iterator[LiveEhr]:
    if "live" not in _shared:
        _shared["live"] = start_live_ehr(instance_dir, "live", LIVE_BUNDLES, client_key)
        _shared["users"] = 0
    _shared["users"] += 1
    live: LiveEhr = _shared["live"]
    yield live
    _shared["users"] -= 1
    if not _shared["users"]:
        stop_live_ehr(_shared.pop("live"))


@pytest.fixture(autouse=True)
def _fresh_discovery() -> Iterator[None]:
    discovery.clear_cache()
    yield
    discovery.clear_cache()


class Recorder(httpx.BaseTransport):
    """A real HTTP transport that remembers every request and can rewrite responses."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []
        self.rewrite: Callable[[httpx.Request, httpx.Response], httpx.Response] | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        response = self.inner.handle_request(request)
        if self.rewrite is not None:
            response.read()
            response = self.rewrite(request, response)
        return response

    def close(self) -> None:
        """Clients close their transport on exit; this one lives for the whole test."""

    def to(self, path_suffix: str, method: str | None = None) -> list[httpx.Request]:
        return [
            r
            for r in self.requests
            if r.url.path.endswith(path_suffix) and (method is None or r.method == method)
        ]

    def form(self, request: httpx.Request) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def json_response(original: httpx.Response, body: Any) -> httpx.Response:
    """A copy of `original` with another JSON body."""
    headers = {
        k: v
        for k, v in original.headers.items()
        if k.lower() not in ("content-length", "content-encoding")
    }
    return httpx.Response(original.status_code, headers=headers, json=body)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def token_key() -> bytes:
    return Fernet.generate_key()


@pytest.fixture
def smart(
    client_key: RSAKey, recorder: Recorder, sleeps: list[float], token_key: bytes
) -> SmartSettings:
    """The portal's SMART settings for a test: its own key, recorded traffic, no real sleeping."""
    settings = SmartSettings(
        cipher=TokenCipher([token_key]),
        client_key=client_key,
        http_timeout=5.0,
        sleep=sleeps.append,
        transport=recorder,
    )
    return install(settings)


@pytest.fixture
def factory(app: Flask) -> sessionmaker[Session]:
    """Units of work on the portal's test database (emptied after each test by `app`)."""
    return db.sessionmaker(app)


def register_ehr(
    factory: sessionmaker[Session],
    live: LiveEhr,
    client_type: str,
    smart: SmartSettings,
    *,
    fhir_base: str | None = None,
) -> EhrServer:
    with transaction(factory) as session:
        ehr = upsert_ehr(
            session,
            name=live.app.config["NAME"],
            fhir_base=fhir_base or live.fhir_base,
            client_id=CLIENT_IDS[client_type],
            client_type=client_type,
        )
        if client_type == "confidential-symmetric":
            set_client_secret(ehr, CLIENT_SECRET, settings=smart)
        return ehr


@pytest.fixture
def ehr(factory: sessionmaker[Session], live_ehr: LiveEhr, smart: SmartSettings) -> EhrServer:
    """The live EHR in the portal's registry, with the portal as a public client."""
    return register_ehr(factory, live_ehr, "public", smart)


# --- the patient's browser -------------------------------------------------------------------


@dataclass
class Browser:
    """The patient's browser: a cookie jar at the EHR, and a binding cookie at the portal."""

    http: httpx.Client
    binding: str


@pytest.fixture
def browser(live_ehr: LiveEhr) -> Iterator[Browser]:
    with httpx.Client(base_url=live_ehr.base_url) as http:
        yield Browser(http, new_browser_binding())


def sign_in_at_ehr(live: LiveEhr, browser: Browser, patient: str = "christin_stiedemann") -> None:
    who = patient_login(live.app, live.patient(patient))
    answer = login(browser.http, who)
    assert answer.status_code in (302, 303), answer.status_code


def params_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def consent_to(
    browser: Browser, authorize_url: str, untick: tuple[str, ...] = ()
) -> dict[str, str]:
    """Open the authorize URL, allow, and return the callback's query parameters."""
    answer = consent(browser.http, authorize_url, untick=untick)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return params_of(location)


def standalone(
    factory: sessionmaker[Session],
    ehr: EhrServer,
    browser: Browser,
    smart: SmartSettings,
    *,
    account_id: int | None = None,
    untick: tuple[str, ...] = (),
) -> LaunchResult:
    """Run the whole standalone launch (the patient is signed in at the EHR already)."""
    with transaction(factory) as session:
        url = begin(
            session,
            ehr,
            kind="standalone",
            account_id=account_id,
            redirect_uri=REDIRECT_URI,
            browser_binding=browser.binding,
            settings=smart,
        )
    callback = consent_to(browser, url, untick)
    with transaction(factory) as session:
        return complete(
            session,
            state=callback.get("state"),
            code=callback.get("code"),
            error=callback.get("error"),
            browser_binding=browser.binding,
            redirect_uri=REDIRECT_URI,
            settings=smart,
        )


def simulate_ehr_launch(
    live: LiveEhr,
    browser: Browser,
    patient: str,
    encounter: str | None = None,
    *,
    clinician: str | None = None,
) -> dict[str, str]:
    """Press Launch in the EHR's launch simulator (from one of the patient's visits, when
    `encounter` names it); returns the launch URL's iss and launch.

    As the patient from the EHR's patient portal: the patient signs in there first with
    their own login. With `clinician` (a Practitioner id, or "any"): from the patient's
    chart, in that clinician's name.
    """
    role = "clinician" if clinician else "portal"
    if role == "portal":
        sign_in_at_ehr(live, browser, patient)
    page = browser.http.get(
        "/launch",
        params={"app": CLIENT_IDS["public"], "patient": live.patient(patient), "role": role},
    )
    assert page.status_code == 200
    form = form_with(page.text, "encounter")
    data = form.data()
    data["need_patient_banner"] = "1"
    if clinician:
        data["clinician"] = form.selects["clinician"][0] if clinician == "any" else clinician
    if encounter is not None:
        data["encounter"] = encounter
    opened = browser.http.post("/launch", data=data)
    assert opened.status_code == 303, opened.text
    assert opened.headers["location"].startswith(LAUNCH_URL + "?")
    return params_of(opened.headers["location"])


def connected(
    factory: sessionmaker[Session],
    ehr: EhrServer,
    browser: Browser,
    live: LiveEhr,
    smart: SmartSettings,
    patient: str = "christin_stiedemann",
    untick: tuple[str, ...] = (),
) -> int:
    """Sign in, connect an account to the patient's record; returns the connection id."""
    sign_in_at_ehr(live, browser, patient)
    with transaction(factory) as session:
        account = Account(display_name="Test Patient")
        session.add(account)
        session.flush()
        account_id = account.id
    result = standalone(factory, ehr, browser, smart, account_id=account_id, untick=untick)
    with transaction(factory) as session:
        account = session.get(Account, account_id)
        assert account is not None
        return connect(session, result, account, settings=smart).id


def rows(factory: sessionmaker[Session], statement: Any) -> list[Any]:
    with factory() as session:
        return list(session.execute(statement))


def count_by_type(factory: sessionmaker[Session], connection_id: int) -> dict[str, int]:
    from portal.models import FhirRecord

    found = rows(
        factory,
        sa.select(FhirRecord.resource_type, sa.func.count())
        .where(FhirRecord.connection_id == connection_id)
        .group_by(FhirRecord.resource_type),
    )
    return {t: n for t, n in found}


RIVERSIDE = "Riverside General Hospital"


@pytest.fixture
def portal(app: Flask, smart: SmartSettings) -> Flask:
    """The portal on this test's SMART settings: its token key, recorded traffic, no sleeping."""
    app.extensions["smart"] = smart
    return app


@pytest.fixture
def riverside(factory: sessionmaker[Session], live_ehr: LiveEhr) -> EhrServer:
    with transaction(factory) as session:
        return upsert_ehr(
            session, name=RIVERSIDE, fhir_base=live_ehr.fhir_base, client_id=CLIENT_IDS["public"]
        )


@pytest.fixture
def faults(live_ehr: LiveEhr) -> Iterator[LiveEhr]:
    yield live_ehr
    live_ehr.clear_faults()


@dataclass(frozen=True)
class Statement:
    sql: str
    rows: int  # parameter sets (an executemany has several)


@contextmanager
def statements(factory: sessionmaker[Session]) -> Iterator[list[Statement]]:
    """SQL run through the factory's engine inside the block."""
    seen: list[Statement] = []

    def note(_conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
        seen.append(Statement(sql, len(params) if many else 1))

    engine = factory.kw["bind"]
    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
