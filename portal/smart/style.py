"""`smart_style_url`: the launching EHR's look (colours, fonts, radius) as portal CSS.

The style document is fetched server-side, every value is checked against a strict pattern
(nothing else reaches the stylesheet), and the result is served as a same-origin CSS file,
so the CSP needs no inline styles and no third-party origin.

The URL comes from the token response, so it is the EHR's word and fetched only from the
EHR's own origins: its FHIR base's and its authorization server's (the authorization and
token endpoints of its SMART configuration). Any other host is never asked, nor looked up.
The host is resolved once and the request goes to the address that was checked (DNS
rebinding finds nothing to rebind); an address that is loopback, private, link-local,
multicast or otherwise not public is used only when the registry names the EHR by that very
address (the sandbox EHRs on 127.0.0.1). The body is streamed, capped and timed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import httpx

from portal.smart.discovery import discover, origin
from portal.smart.errors import SmartError
from portal.smart.settings import SmartSettings, resolve

log = logging.getLogger(__name__)

_COLOR = re.compile(r"^(#[0-9a-fA-F]{3,8}|rgba?\(\s*[\d.]+%?(\s*,\s*[\d.]+%?){2,3}\s*\))$")
_DIM = re.compile(r"^\d{1,3}(\.\d{1,3})?(px|em|rem)$")
_FONT = re.compile(r"^[A-Za-z0-9 ,'\"-]{1,120}$")
# SMART style key -> (CSS custom property, pattern)
STYLE_KEYS = {
    "color_background": ("--bg", _COLOR),
    "color_text": ("--fg", _COLOR),
    "color_highlight": ("--accent", _COLOR),
    "color_error": ("--danger", _COLOR),
    "color_success": ("--success", _COLOR),
    "dim_border_radius": ("--radius", _DIM),
    "dim_font_size": ("--font-size", _DIM),
    "dim_spacing_size": ("--spacing", _DIM),
    "font_family_body": ("--font-body", _FONT),
    "font_family_heading": ("--font-heading", _FONT),
}
MAX_AGE = 3600.0
MAX_BYTES = 64 * 1024  # a style document is a few hundred bytes
TIMEOUT = 5.0  # seconds for the whole fetch (and for each step of it)
MAX_REDIRECTS = 3  # within the same origin only
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_cache: dict[tuple[str, str], tuple[float, str]] = {}
_lock = threading.Lock()


def style_css(style: dict[str, object]) -> str:
    """CSS custom properties for the recognised, well-formed keys of a SMART style document."""
    lines = []
    for key, (prop, pattern) in STYLE_KEYS.items():
        value = style.get(key)
        if isinstance(value, str) and pattern.match(value.strip()):
            lines.append(f"  {prop}: {value.strip()};")
    if not lines:
        return ""
    return ":root {\n" + "\n".join(lines) + "\n}\n"


class Ehr(Protocol):
    """What the style fetch needs of an EHR (an EhrServer)."""

    @property
    def fhir_base(self) -> str: ...


class StyleRefused(SmartError):
    """A style URL the portal does not fetch (another host, an address not the EHR's)."""


def css_for(url: str, ehr: Ehr, *, settings: SmartSettings | None = None) -> str:
    """The CSS of the EHR's style URL (cached); empty when it cannot or may not be fetched,
    or says nothing usable."""
    key = (url, ehr.fhir_base)
    now = time.monotonic()
    with _lock:
        cached = _cache.get(key)
    if cached and cached[0] > now:
        return cached[1]
    try:
        css = style_css(fetch_style(url, ehr.fhir_base, resolve(settings)))
    except (SmartError, ValueError) as exc:  # ValueError: a registered base that is no URL
        log.info("smart_style_url not applied: %s (%s)", type(exc).__name__, exc)
        css = ""
    with _lock:
        _cache[key] = (now + MAX_AGE, css)
    return css


def own_origins(fhir_base: str, settings: SmartSettings) -> set[tuple[str, str, int]]:
    """The EHR's own origins: its FHIR base's, and its authorization server's as its SMART
    configuration names them (without that configuration, the FHIR base's alone)."""
    origins = {origin(fhir_base)}
    try:
        config = discover(fhir_base, settings=settings)
    except SmartError:
        return origins
    for endpoint in (config.authorization_endpoint, config.token_endpoint):
        try:
            origins.add(origin(endpoint))
        except ValueError:
            continue
    return origins


def fetch_style(url: str, fhir_base: str, settings: SmartSettings) -> dict[str, Any]:
    """The style document at `url`, from one of the EHR's own origins only (see above)."""
    deadline = time.monotonic() + TIMEOUT
    # Usually cached since the launch; else asked within the style's own time.
    quick = dataclasses.replace(settings, http_timeout=min(settings.http_timeout, TIMEOUT))
    allowed = own_origins(fhir_base, quick)
    target = _checked(url, allowed)
    scheme, host, port = origin(target)
    address = _address(host, port, settings)
    pinned = PinnedTransport(host, port, address, settings.transport)
    left = max(deadline - time.monotonic(), 0.1)
    try:
        with settings.http_client(transport=pinned, timeout=left) as http:
            for _ in range(MAX_REDIRECTS + 1):
                with http.stream("GET", target, headers={"Accept": "application/json"}) as r:
                    if r.is_redirect:
                        location = urljoin(target, r.headers.get("Location", ""))
                        if origin(_checked(location, allowed)) != (scheme, host, port):
                            raise StyleRefused("the style URL redirects to another origin")
                        target = location
                        continue
                    if r.status_code != 200:
                        raise StyleRefused(f"the style URL answered {r.status_code}")
                    body = _read(r, deadline)
                    break
            else:
                raise StyleRefused("the style URL redirects too often")
    except httpx.HTTPError as exc:
        raise StyleRefused(f"the style URL could not be fetched ({type(exc).__name__})") from None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise StyleRefused("the style document is not JSON") from None
    if not isinstance(document, dict):
        raise StyleRefused("the style document is not a JSON object")
    return document


def _checked(url: str, allowed: set[tuple[str, str, int]]) -> str:
    """`url` if it is http(s), without credentials, on one of the `allowed` origins."""
    parts = urlsplit(url)
    if _CONTROL.search(url) or parts.scheme not in ("http", "https") or "@" in parts.netloc:
        raise StyleRefused("the style URL is not a plain http(s) URL")
    try:
        where = origin(url)
    except ValueError:
        raise StyleRefused("the style URL is not a URL") from None
    if where not in allowed:
        raise StyleRefused("the style URL is not on one of the EHR's own origins")
    return url


def _address(host: str, port: int, settings: SmartSettings) -> str:
    """The one address the request goes to: `host` resolved once, every address checked."""
    if _ip(host) is not None:
        # An address, and one of the EHR's own origins (checked before): what the registry
        # or the EHR's SMART configuration names, whatever kind of address it is.
        return host
    lookup = settings.resolver or _getaddrinfo
    try:
        found = [ipaddress.ip_address(a) for a in lookup(host, port)]
    except (OSError, ValueError):
        raise StyleRefused("the style URL's host could not be resolved") from None
    if not found:
        raise StyleRefused("the style URL's host could not be resolved")
    if not all(_public(a) for a in found):
        # A name the EHR's origins share that resolves inside: rebinding, or an internal name.
        raise StyleRefused("the style URL's host resolves to an address that is not public")
    return str(found[0])


def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A globally routable unicast address, and so is any IPv4 address it carries."""
    if not address.is_global or address.is_multicast or address.is_reserved:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        return all(_public(e) for e in embedded if e is not None)
    return True


def _read(response: httpx.Response, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_BYTES:
        raise StyleRefused("the style document is too large")
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > MAX_BYTES:
            raise StyleRefused("the style document is too large")
        if time.monotonic() > deadline:
            raise StyleRefused("the style document took too long")
        chunks.append(chunk)
    return b"".join(chunks)


class PinnedTransport(httpx.BaseTransport):
    """Sends requests for `host:port` to `address`, the one that was checked: the URL names
    the address, the Host header and TLS (SNI, certificate) still name the host."""

    def __init__(
        self, host: str, port: int, address: str, inner: httpx.BaseTransport | None = None
    ) -> None:
        self.host, self.port, self.address = host, port, address
        self.owned = inner is None  # a transport of the settings (tests) is not ours to close
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if origin(str(request.url))[1:] != (self.host, self.port):
            raise httpx.ConnectError("not the pinned host", request=request)
        request.url = request.url.copy_with(host=self.address)
        request.extensions = {**request.extensions, "sni_hostname": self.host}
        return self.inner.handle_request(request)

    def close(self) -> None:
        if self.owned:
            self.inner.close()


def clear_cache() -> None:
    with _lock:
        _cache.clear()
