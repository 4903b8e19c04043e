"""SMART discovery (`{iss}/.well-known/smart-configuration`) and the EHR's JWKS, cached per process.

Only registered FHIR bases are ever passed here (the registry check comes first). Redirects
are followed only within the same origin; relative endpoint URLs resolve against the FHIR base.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from portal.smart.errors import DiscoveryError, DiscoveryRefused, DiscoveryUnavailable
from portal.smart.settings import SmartSettings, resolve

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 1 << 20
MAX_REDIRECTS = 3
JWKS_REFETCH_INTERVAL = 30.0  # an unknown kid refetches the JWKS at most this often
DEFAULT_PORTS = {"http": 80, "https": 443}

_lock = threading.Lock()
_configs: dict[str, tuple[float, SmartConfiguration]] = {}
_jwks: dict[str, tuple[float, float, dict[str, Any]]] = {}  # uri -> (expires, fetched, jwks)


@dataclass(frozen=True)
class SmartConfiguration:
    """What an EHR's smart-configuration says, with every URL absolute and checked."""

    fhir_base: str
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str | None
    jwks_uri: str | None
    capabilities: tuple[str, ...]
    code_challenge_methods: tuple[str, ...]
    scopes_supported: tuple[str, ...]
    token_endpoint_auth_methods: tuple[str, ...]

    def has(self, capability: str) -> bool:
        return capability in self.capabilities


def clear_cache() -> None:
    """Forget every cached configuration and JWKS (tests; registry changes)."""
    with _lock:
        _configs.clear()
        _jwks.clear()


def discover(fhir_base: str, *, settings: SmartSettings | None = None) -> SmartConfiguration:
    """The EHR's SMART configuration, from the cache while it is fresh."""
    settings = resolve(settings)
    base = fhir_base.rstrip("/")
    now = time.monotonic()
    with _lock:
        cached = _configs.get(base)
    if cached and cached[0] > now:
        return cached[1]
    body = get_json(f"{base}/.well-known/smart-configuration", settings)
    config = parse_configuration(base, body)
    with _lock:
        _configs[base] = (now + settings.discovery_max_age, config)
    log.info("discovered SMART configuration of %s", base)
    return config


def parse_configuration(base: str, body: dict[str, Any]) -> SmartConfiguration:
    """Check and normalise a smart-configuration document."""
    for required in ("authorization_endpoint", "token_endpoint"):
        if not isinstance(body.get(required), str) or not body[required]:
            raise DiscoveryError(f"smart-configuration of {base} has no {required}")
    methods = _strings(body, "code_challenge_methods_supported")
    if "S256" not in methods:
        raise DiscoveryError(f"{base} does not support PKCE S256; refusing to use it")

    def url(name: str) -> str | None:
        value = body.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise DiscoveryError(f"smart-configuration of {base}: {name} is not a URL")
        return absolute_url(base, value, name)

    issuer = body.get("issuer")
    return SmartConfiguration(
        fhir_base=base,
        issuer=issuer if isinstance(issuer, str) and issuer else base,
        authorization_endpoint=url("authorization_endpoint") or "",
        token_endpoint=url("token_endpoint") or "",
        revocation_endpoint=url("revocation_endpoint"),
        jwks_uri=url("jwks_uri"),
        capabilities=_strings(body, "capabilities"),
        code_challenge_methods=methods,
        scopes_supported=_strings(body, "scopes_supported"),
        token_endpoint_auth_methods=_strings(body, "token_endpoint_auth_methods_supported"),
    )


def absolute_url(base: str, value: str, name: str = "URL") -> str:
    """`value` resolved against the FHIR base; https whenever the base is https."""
    resolved = urljoin(base + "/", value)
    parts = urlsplit(resolved)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DiscoveryError(f"{name} of {base} is not an http(s) URL")
    if urlsplit(base).scheme == "https" and parts.scheme != "https":
        raise DiscoveryError(f"{name} of {base} is not https")
    if parts.username or parts.password or parts.fragment:
        raise DiscoveryError(f"{name} of {base} has credentials or a fragment")
    return resolved


def _strings(body: dict[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name) or []
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) as a request to `url` goes: the host lower-case, IDNA-encoded and
    without a trailing dot, the default port filled in. ValueError when `url` cannot be one."""
    try:
        parsed = httpx.URL(url)  # the parser that sends the request: what is compared is what goes
    except (httpx.InvalidURL, TypeError):
        raise ValueError("not a URL") from None
    scheme = parsed.scheme
    port = parsed.port or DEFAULT_PORTS.get(scheme, 0)
    return scheme, parsed.raw_host.decode("ascii").lower().rstrip("."), port


def same_origin(url: str, other: str) -> bool:
    """Whether two URLs have one origin (False when either is no URL)."""
    try:
        return origin(url) == origin(other)
    except ValueError:
        return False


def get_json(url: str, settings: SmartSettings) -> dict[str, Any]:
    """GET a small JSON object; redirects only within the same origin."""
    try:
        with settings.http_client() as http:
            for _ in range(MAX_REDIRECTS + 1):
                response = http.get(url, headers={"Accept": "application/json"})
                if response.is_redirect:
                    target = urljoin(url, response.headers.get("location", ""))
                    if not same_origin(target, url):
                        raise DiscoveryError(f"{url} redirects to another host; not followed")
                    url = target
                    continue
                break
            else:
                raise DiscoveryError(f"{url}: too many redirects")
    except httpx.HTTPError as exc:
        raise DiscoveryUnavailable(f"{url} could not be fetched ({type(exc).__name__})") from exc
    status = response.status_code
    if status >= 500 or status == 429:
        raise DiscoveryUnavailable(f"{url} answered HTTP {status}", http_status=status)
    if 400 <= status < 500:
        raise DiscoveryRefused(f"{url} answered HTTP {status}", http_status=status)
    if status != 200:
        raise DiscoveryError(f"{url} answered HTTP {status}", http_status=status)
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise DiscoveryError(f"{url} is too large", http_status=status)
    try:
        body = response.json()
    except ValueError as exc:
        raise DiscoveryError(f"{url} is not JSON", http_status=status) from exc
    if not isinstance(body, dict):
        raise DiscoveryError(f"{url} is not a JSON object", http_status=status)
    return body


def jwks(
    uri: str, *, refresh: bool = False, settings: SmartSettings | None = None
) -> dict[str, Any]:
    """The EHR's JWKS; `refresh` refetches (rate-limited) when a kid was not found."""
    settings = resolve(settings)
    now = time.monotonic()
    with _lock:
        cached = _jwks.get(uri)
    if cached and cached[0] > now and not (refresh and now - cached[1] > JWKS_REFETCH_INTERVAL):
        return cached[2]
    body = get_json(uri, settings)
    if not isinstance(body.get("keys"), list):
        raise DiscoveryError(f"{uri} is not a JWKS")
    with _lock:
        _jwks[uri] = (now + settings.discovery_max_age, now, body)
    return body
