"""FHIR HTTP client for one connection: bearer token only to its FHIR base, paging, retries.

- The token goes only to URLs under the connection's FHIR base (scheme, host, port, path).
- `Bundle.link[next]` is followed until done; a next link to another base or one already
  fetched (a loop) is refused.
- 401: one refresh and one retry. 429/503: honour Retry-After (seconds or HTTP date), else
  exponential backoff; each wait capped, attempts bounded. Network errors: retried likewise.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import httpx

from portal.smart.discovery import origin
from portal.smart.errors import EhrUnavailable, FhirRequestError, UnsafeLink
from portal.smart.settings import SmartSettings

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 503})
FHIR_JSON = "application/fhir+json"


class Tokens(Protocol):
    """Where the client gets its bearer token (see portal.smart.tokens.TokenSource)."""

    def get(self) -> str: ...

    def refused(self, token: str) -> str: ...


def within_base(url: str, base: str) -> bool:
    """Whether `url` is on the FHIR base's origin and under its path."""
    parts = urlsplit(url)
    if parts.username or parts.password or parts.scheme not in ("http", "https"):
        return False
    if origin(url) != origin(base):
        return False
    prefix = urlsplit(base).path.rstrip("/")
    return parts.path == prefix or parts.path.startswith(prefix + "/")


def canonical(url: str) -> tuple[Any, ...]:
    """A URL compared by meaning: origin, path and the sorted, decoded query parameters."""
    parts = urlsplit(url)
    return (*origin(url), parts.path.rstrip("/"), tuple(sorted(parse_qsl(parts.query, True))))


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class FhirClient:
    """Reads from one connection's FHIR base with its token."""

    def __init__(
        self,
        base: str,
        tokens: Tokens,
        http: httpx.Client,
        settings: SmartSettings,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.base = base.rstrip("/")
        self.tokens = tokens
        self.http = http
        self.settings = settings
        self.sleep = sleep or settings.sleep
        self.requests = 0  # counted for progress and tests

    def url(self, path: str, params: list[tuple[str, str]] | None = None) -> str:
        url = f"{self.base}/{path.lstrip('/')}"
        return f"{url}?{urlencode(params)}" if params else url

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        return self.get(self.url(f"{resource_type}/{resource_id}"))

    def search(self, resource_type: str, params: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
        """Every page (a searchset Bundle) of a search, following next links safely."""
        url: str | None = self.url(resource_type, params)
        seen: set[tuple[Any, ...]] = set()
        while url is not None:
            seen.add(canonical(url))
            bundle = self.get(url)
            if bundle.get("resourceType") != "Bundle":
                raise FhirRequestError(f"{resource_type} search did not answer a Bundle")
            yield bundle
            url = self.next_link(bundle, seen)

    def next_link(self, bundle: dict[str, Any], seen: set[tuple[Any, ...]]) -> str | None:
        links = bundle.get("link") or []
        for link in links if isinstance(links, list) else []:
            if isinstance(link, dict) and link.get("relation") == "next":
                target = link.get("url")
                if not isinstance(target, str) or not target:
                    raise UnsafeLink("a next link has no URL")
                target = urljoin(self.base + "/", target)
                if not within_base(target, self.base):
                    raise UnsafeLink("a next link points outside the EHR's FHIR base; refused")
                if canonical(target) in seen:
                    raise UnsafeLink("a next link repeats a page already fetched; refused")
                return target
        return None

    def get(self, url: str) -> dict[str, Any]:
        """GET a FHIR JSON resource with the bearer token, retrying what may pass."""
        if not within_base(url, self.base):
            raise UnsafeLink("refusing to send the token outside the EHR's FHIR base")
        token = self.tokens.get()
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                self.requests += 1
                response = self.http.get(
                    url, headers={"Authorization": f"Bearer {token}", "Accept": FHIR_JSON}
                )
            except httpx.TransportError as exc:
                if attempt >= self.settings.max_attempts:
                    raise EhrUnavailable(
                        f"the EHR could not be reached ({type(exc).__name__})"
                    ) from None
                self._wait(attempt, None)
                continue
            if response.status_code == 401 and not refreshed:
                refreshed = True
                token = self.tokens.refused(token)
                continue
            if response.status_code in RETRY_STATUSES:
                if attempt >= self.settings.max_attempts:
                    raise EhrUnavailable(
                        f"the EHR kept answering {response.status_code} after {attempt} attempts"
                    )
                self._wait(attempt, retry_after(response.headers.get("Retry-After")))
                continue
            if response.status_code >= 500:
                if attempt >= self.settings.max_attempts:
                    raise EhrUnavailable(f"the EHR answered {response.status_code}")
                self._wait(attempt, None)
                continue
            if response.status_code != 200:
                raise FhirRequestError(
                    f"the EHR answered {response.status_code}", response.status_code
                )
            try:
                body = response.json()
            except ValueError:
                raise FhirRequestError("the EHR answered something that is not JSON") from None
            if not isinstance(body, dict):
                raise FhirRequestError("the EHR answered something that is not a FHIR resource")
            return body

    def _wait(self, attempt: int, suggested: float | None) -> None:
        """Retry-After when given, else exponential backoff with jitter; never above the cap."""
        if suggested is None:
            suggested = 0.25 * 2 ** (attempt - 1) * (1 + random.random() / 2)  # noqa: S311  (jitter)
        delay = min(max(suggested, 0.0), self.settings.max_wait)
        log.info("EHR busy or unreachable; retrying in %.1f s (attempt %d)", delay, attempt)
        self.sleep(delay)
