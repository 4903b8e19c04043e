"""smart_style_url: only well-formed values become CSS, fetched only from the EHR's own
origins (real local listeners show what is never requested)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from cryptography.fernet import Fernet

from portal.smart import discovery, style
from portal.smart.crypto import TokenCipher
from portal.smart.settings import SmartSettings


def test_recognised_values_become_custom_properties() -> None:
    css = style.style_css(
        {
            "color_background": "#edeae3",
            "color_highlight": "rgb(69, 117, 162)",
            "dim_border_radius": "6px",
            "font_family_body": "Georgia, 'Times New Roman', serif",
            "unknown_key": "#000",
        }
    )
    assert "--bg: #edeae3;" in css
    assert "--accent: rgb(69, 117, 162);" in css
    assert "--radius: 6px;" in css
    assert "--font-body: Georgia, 'Times New Roman', serif;" in css
    assert "unknown" not in css


def test_injection_attempts_are_dropped() -> None:
    css = style.style_css(
        {
            "color_background": "red; } body { background: url(https://evil.example/x)",
            "color_text": "#fff</style><script>",
            "font_family_body": "x;}@import url(//evil.example)",
            "dim_font_size": "expression(alert(1))",
        }
    )
    assert css == ""


def test_fetched_and_cached_and_failures_give_no_css() -> None:
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if request.url.path == "/style.json":
            return httpx.Response(200, json={"color_highlight": "#123456"})
        return httpx.Response(500)

    settings = SmartSettings(
        cipher=TokenCipher([Fernet.generate_key()]),
        transport=httpx.MockTransport(handle),
        resolver=lambda _host, _port: ["93.184.216.34"],
    )
    style.clear_cache()
    discovery.clear_cache()
    ehr = FakeServer("https://ehr.example/fhir")
    assert "--accent: #123456;" in style.css_for(
        "https://ehr.example/style.json", ehr, settings=settings
    )
    fetched = len(calls)
    style.css_for("https://ehr.example/style.json", ehr, settings=settings)
    assert len(calls) == fetched  # cached
    assert style.css_for("https://ehr.example/broken.json", ehr, settings=settings) == ""
    style.clear_cache()
    discovery.clear_cache()


# --- where the style document may come from ----------------------------------------------------


class Listener:
    """A real TCP listener on a loopback address that remembers every connection made to it
    (and the request line it got), and answers each with a style document."""

    def __init__(self, host: str = "127.0.0.1", family: int = socket.AF_INET) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.netloc = (
            f"[{host}]:{self.port}" if family == socket.AF_INET6 else f"{host}:{self.port}"
        )
        self.arrived: list[str] = []  # request lines ("" when the connection sent nothing)
        self.answers: dict[str, tuple[int, dict[str, str], bytes]] = {}
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://{self.netloc}{path}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                line = data.split(b"\r\n", 1)[0].decode("latin-1")
                self.arrived.append(line)
                path = line.split(" ")[1] if line.count(" ") >= 2 else "/"
                status, headers, body = self.answers.get(
                    path, (200, {"Content-Type": "application/json"}, STYLE)
                )
                head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
                head += [f"{k}: {v}" for k, v in headers.items()]
                conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def close(self) -> None:
        self.sock.close()


STYLE = json.dumps({"color_highlight": "#123456"}).encode()
APPLIED = "--accent: #123456;"


@dataclass
class FakeServer:
    """What css_for needs of an EhrServer."""

    fhir_base: str


class Recording(httpx.BaseTransport):
    """The real transport, remembering every request the portal attempts."""

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self.inner = inner or httpx.HTTPTransport()
        self.attempts: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts.append(request)
        host = request.url.host
        assert host in ("127.0.0.1", "::1") or isinstance(self.inner, httpx.MockTransport), host
        return self.inner.handle_request(request)


@dataclass
class Local:
    """An EHR on 127.0.0.1 (FHIR base and SMART configuration), its authorization server on
    another port, and listeners that are not the EHR's."""

    ehr: Listener
    auth: Listener
    other: Listener
    v6: Listener | None
    settings: SmartSettings
    transport: Recording
    lookups: list[str]

    @property
    def server(self) -> FakeServer:
        return FakeServer(self.ehr.url("/fhir"))

    def style_requests(self, listener: Listener) -> list[str]:
        return [line for line in listener.arrived if "smart-configuration" not in line]

    def attempted(self, url_part: str) -> list[str]:
        return [str(r.url) for r in self.transport.attempts if url_part in str(r.url)]


@pytest.fixture
def local() -> Iterator[Local]:
    ehr, auth, other = Listener(), Listener(), Listener()
    try:
        v6: Listener | None = Listener("::1", socket.AF_INET6)
    except OSError:  # no IPv6 loopback on this machine: the IPv4 listeners say it all
        v6 = None
    config = {
        "authorization_endpoint": auth.url("/authorize"),
        "token_endpoint": auth.url("/token"),
        "code_challenge_methods_supported": ["S256"],
    }
    ehr.answers["/fhir/.well-known/smart-configuration"] = (
        200,
        {"Content-Type": "application/json"},
        json.dumps(config).encode(),
    )
    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        raise OSError("no lookups in this test")

    transport = Recording()
    settings = SmartSettings(
        cipher=TokenCipher([Fernet.generate_key()]), transport=transport, resolver=resolver
    )
    style.clear_cache()
    discovery.clear_cache()
    yield Local(ehr, auth, other, v6, settings, transport, lookups)
    for listener in (ehr, auth, other, v6):
        if listener is not None:
            listener.close()
    style.clear_cache()
    discovery.clear_cache()


def test_the_ehrs_own_origins_still_give_their_style(local: Local) -> None:
    assert APPLIED in style.css_for(
        local.ehr.url("/style.json"), local.server, settings=local.settings
    )
    assert local.style_requests(local.ehr) == ["GET /style.json HTTP/1.1"]
    # the authorization server's origin (from the EHR's SMART configuration) is the EHR's too
    assert APPLIED in style.css_for(
        local.auth.url("/style.json"), local.server, settings=local.settings
    )
    assert local.style_requests(local.auth) == ["GET /style.json HTTP/1.1"]


def test_loopback_addresses_that_are_not_the_ehrs_are_never_requested(local: Local) -> None:
    elsewhere = [local.other.url("/style.json"), f"http://localhost:{local.ehr.port}/style.json"]
    if local.v6 is not None:
        elsewhere.append(local.v6.url("/style.json"))
    for url in elsewhere:
        assert style.css_for(url, local.server, settings=local.settings) == "", url
    assert local.other.arrived == []
    assert local.v6 is None or local.v6.arrived == []
    assert local.style_requests(local.ehr) == []  # not even through another name for it
    assert local.lookups == []  # nor looked up
    assert local.attempted("style") == []


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/style.json",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00::1]/style.json",
        "http://[::ffff:169.254.169.254]/style.json",
        "http://224.0.0.1/style.json",
        "https://other.example/style.json",
        "http://2130706433/style.json",
        "http://127.1/style.json",
        "http://user@127.0.0.1/style.json",
        "file:///etc/passwd",
    ],
)
def test_other_hosts_are_never_asked_nor_looked_up(local: Local, url: str) -> None:
    assert style.css_for(url, local.server, settings=local.settings) == ""
    assert local.attempted("style") == [] and local.attempted("meta-data") == []
    assert local.attempted("passwd") == []
    assert local.lookups == []


def test_a_redirect_to_another_origin_is_not_followed(local: Local) -> None:
    local.ehr.answers["/moved.json"] = (302, {"Location": local.other.url("/style.json")}, b"")
    assert style.css_for(local.ehr.url("/moved.json"), local.server, settings=local.settings) == ""
    assert local.other.arrived == []
    local.ehr.answers["/here.json"] = (302, {"Location": "/style.json"}, b"")
    css = style.css_for(local.ehr.url("/here.json"), local.server, settings=local.settings)
    assert APPLIED in css  # within the same origin it is


def test_a_style_document_over_the_cap_is_not_read_to_its_end(local: Local) -> None:
    big = b'{"color_highlight": "#123456", "pad": "' + b"x" * (2 * style.MAX_BYTES) + b'"}'
    local.ehr.answers["/big.json"] = (200, {"Content-Type": "application/json"}, big)
    assert style.css_for(local.ehr.url("/big.json"), local.server, settings=local.settings) == ""


def test_an_ehr_that_never_answers_is_given_up_on(local: Local, monkeypatch) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts, never answers
    monkeypatch.setattr(style, "TIMEOUT", 0.2)
    server = FakeServer(f"http://127.0.0.1:{silent.getsockname()[1]}/fhir")
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/style.json"
        assert style.css_for(url, server, settings=local.settings) == ""
    finally:
        silent.close()


# --- an EHR named by a host name: resolved once, checked, pinned --------------------------------


NAMED = FakeServer("https://ehr.example/fhir")


def named_ehr(addresses: list[str]) -> tuple[SmartSettings, list[httpx.Request], list[str]]:
    """Settings for an EHR at https://ehr.example whose name resolves to `addresses`; nothing
    leaves this process (a mock transport answers)."""
    sent: list[httpx.Request] = []
    lookups: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path.endswith("/.well-known/smart-configuration"):
            return httpx.Response(
                200,
                json={
                    "authorization_endpoint": "https://ehr.example/auth/authorize",
                    "token_endpoint": "https://ehr.example/auth/token",
                    "code_challenge_methods_supported": ["S256"],
                },
            )
        return httpx.Response(200, json={"color_highlight": "#123456"})

    def resolver(host: str, port: int) -> list[str]:
        lookups.append(f"{host}:{port}")
        return addresses

    settings = SmartSettings(
        cipher=TokenCipher([Fernet.generate_key()]),
        transport=httpx.MockTransport(answer),
        resolver=resolver,
    )
    style.clear_cache()
    discovery.clear_cache()
    return settings, sent, lookups


def style_requests(sent: list[httpx.Request]) -> list[httpx.Request]:
    return [r for r in sent if "smart-configuration" not in r.url.path]


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["169.254.169.254"],
        ["10.0.0.1"],
        ["::1"],
        ["fe80::1"],
        ["93.184.216.34", "127.0.0.1"],  # one of them inside is enough to refuse
        ["2002:7f00:1::"],  # 6to4 around 127.0.0.1
        ["64:ff9b::a9fe:a9fe"],  # NAT64 around 169.254.169.254
    ],
)
def test_the_ehrs_name_resolving_inside_is_never_requested(addresses: list[str]) -> None:
    """DNS rebinding: the EHR's own host name, resolving (now) to an internal address."""
    settings, sent, lookups = named_ehr(addresses)
    assert style.css_for("https://ehr.example/style.json", NAMED, settings=settings) == ""
    assert style_requests(sent) == []
    assert lookups == ["ehr.example:443"]


def test_the_request_goes_to_the_address_that_was_checked() -> None:
    settings, sent, lookups = named_ehr(["93.184.216.34"])
    assert APPLIED in style.css_for("https://EHR.example/style.json", NAMED, settings=settings)
    assert lookups == ["ehr.example:443"]  # resolved once
    (request,) = style_requests(sent)
    assert request.url.host == "93.184.216.34" and request.url.port is None
    assert request.headers["host"] == "ehr.example"
    assert request.extensions["sni_hostname"] == "ehr.example"  # TLS checks the EHR's name
