"""FHIR HTTP client for one connection: bearer token only to its FHIR base, paging, retries.

- The token goes only to URLs under the connection's FHIR base (scheme, host, port, path).
- `Bundle.link[next]` is followed until done; a next link to another base or one already
  fetched (a loop) is refused.
- 401: one refresh and one retry. 429/503: honour Retry-After (seconds or HTTP date), else
  exponential backoff; each wait capped, attempts bounded. Network errors: retried likewise.
- Every body is streamed and capped in size (a page of a search, a document), and read
  within the retries: a connection cut in the middle of a body is retried like one that
  failed to open. JSON nested deeper than Python can read is refused as unreadable.
- Searches stop after `max_pages` pages; a client may be given a deadline (no request is
  started, no retry waited for and no body read on past it).
- Documents (`binary`): the same rules, the attachment's own media type asked for; a FHIR
  JSON Binary answer is decoded.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urljoin, urlsplit

import httpx

from portal import fhirjson
from portal.smart.discovery import DEFAULT_PORTS, origin
from portal.smart.errors import EhrUnavailable, FhirRequestError, UnsafeLink
from portal.smart.settings import SmartSettings

log = logging.getLogger(__name__)

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")  # a resource id, as FHIR R4 defines it
RETRY_STATUSES = frozenset({429, 503})
FHIR_JSON = "application/fhir+json"
JSON_TYPES = frozenset({FHIR_JSON, "application/json"})
MAX_BINARY_BYTES = 25 * 1024 * 1024  # a document larger than this is not fetched
MAX_JSON_BYTES = 20 * 1024 * 1024  # a page or resource larger than this is not read
DOT_SEGMENTS = frozenset({".", ".."})
DECODE_ROUNDS = 3  # a path percent-encoded more times than this is refused outright
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


class Tokens(Protocol):
    """Where the client gets its bearer token (see portal.smart.tokens.TokenSource)."""

    def get(self) -> str: ...

    def refused(self, token: str) -> str: ...


def within_base(url: str, base: str) -> bool:
    """Whether `url` is on the FHIR base's origin and under its path: the one check before
    the bearer token goes anywhere.

    Origins are compared as requests go (scheme; host lower-case, IDNA, no trailing dot;
    default port). A `.` or `..` path segment is refused however it is written (`%2e`,
    `%252e`, `..;x`, with backslashes): httpx, a proxy or the EHR's server could resolve it
    to a path outside the base after this check has passed.
    """
    if _CONTROL.search(url):  # urlsplit drops some; servers may not
        return False
    parts = urlsplit(url)
    if "@" in parts.netloc or parts.scheme not in ("http", "https"):
        return False
    try:
        if origin(url) != _base_origin(base) or not _plain_path(parts.path):
            return False
    except ValueError:  # not a URL httpx would send
        return False
    prefix = urlsplit(base).path.rstrip("/")
    return parts.path == prefix or parts.path.startswith(prefix + "/")


@functools.lru_cache(maxsize=64)
def _base_origin(base: str) -> tuple[str, str, int]:
    return origin(base)  # a connection's base, met on every request: parsed once


def _plain_path(path: str) -> bool:
    """No dot segment, backslash or control character in the path, decoded or not."""
    for _ in range(DECODE_ROUNDS + 1):
        if "\\" in path or _CONTROL.search(path):
            return False
        # `..;x` is `..` to servers that take `;` parameters off path segments
        if any(segment.split(";", 1)[0] in DOT_SEGMENTS for segment in path.split("/")):
            return False
        decoded = unquote(path)
        if decoded == path:
            return True
        path = decoded
    return False


def canonical(url: str) -> tuple[Any, ...]:
    """A URL compared by meaning: host, port, path and the sorted, decoded query parameters
    (for telling pages apart: only URLs within_base passed are compared)."""
    parts = urlsplit(url)
    port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    where = (parts.scheme, (parts.hostname or "").rstrip("."), port)
    return (*where, parts.path.rstrip("/"), tuple(sorted(parse_qsl(parts.query, True))))


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
        max_bytes: int = MAX_JSON_BYTES,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = base.rstrip("/")
        self.tokens = tokens
        self.http = http
        self.settings = settings
        self.sleep = sleep or settings.sleep
        self.max_bytes = max_bytes  # of one JSON answer (a search page, a resource)
        self.deadline = deadline  # on `clock`: nothing is started or waited for after it
        self.clock = clock
        self.requests = 0  # counted for progress and tests

    def url(self, path: str, params: list[tuple[str, str]] | None = None) -> str:
        url = f"{self.base}/{path.lstrip('/')}"
        return f"{url}?{urlencode(params)}" if params else url

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        return self.get(self.url(f"{resource_type}/{resource_id}"))

    def search(
        self,
        resource_type: str,
        params: list[tuple[str, str]],
        *,
        max_pages: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every page (a searchset Bundle) of a search, following next links safely; a next
        link after `max_pages` pages raises TooManyPages (the pages before it were yielded)."""
        url: str | None = self.url(resource_type, params)
        seen: set[tuple[Any, ...]] = set()
        pages = 0
        while url is not None:
            seen.add(canonical(url))
            bundle = self.get(url)
            if bundle.get("resourceType") != "Bundle":
                raise FhirRequestError(f"{resource_type} search did not answer a Bundle")
            yield bundle
            pages += 1
            url = self.next_link(bundle, seen)
            if url is not None and max_pages is not None and pages >= max_pages:
                raise TooManyPages(f"{resource_type} search has more than {max_pages} pages")

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
                    raise RepeatedPage("a next link repeats a page already fetched; refused")
                return target
        return None

    def get(self, url: str) -> dict[str, Any]:
        """GET a FHIR JSON resource with the bearer token, retrying what may pass."""
        _, data = self._send(url, FHIR_JSON, limit=lambda _response: self.max_bytes)
        body = json_object(data)
        if not isinstance(body, dict):
            raise Unreadable("the EHR answered something that is not a FHIR resource")
        return body

    def binary(
        self, url: str, content_type: str | None = None, *, max_bytes: int = MAX_BINARY_BYTES
    ) -> BinaryContent:
        """GET a document's bytes (a Binary, or an attachment URL on the FHIR base).

        Asks for `content_type` (else anything); a FHIR JSON Binary answer is decoded, any
        other answer is the document itself. More than `max_bytes` raises TooLarge.
        """
        wanted = _media_type(content_type)
        accept = wanted if _MEDIA_TYPE.match(wanted) else "*/*"  # the EHR's words, checked

        def limit(response: httpx.Response) -> int:
            # base64 in JSON is a third larger than the document it carries
            wrapped = _media_type(response.headers.get("Content-Type")) in JSON_TYPES
            return max_bytes * 4 // 3 + 64 * 1024 if wrapped else max_bytes

        response, body = self._send(url, accept, limit=limit)
        media = _media_type(response.headers.get("Content-Type"))
        if media in JSON_TYPES:
            found = _binary_resource(body)
            if found is not None:
                if len(found.data) > max_bytes:
                    raise TooLarge(f"the document is larger than {max_bytes} bytes")
                return found
        return BinaryContent(body, media or None)

    def _send(
        self,
        url: str,
        accept: str,
        *,
        limit: Callable[[httpx.Response], int] | None = None,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[httpx.Response, bytes]:
        """An `ok` response to a request with the bearer token, and its body, retrying what
        may pass.

        With `limit`, the body is streamed and more than `limit(response)` bytes raise
        TooLarge; a connection that breaks while it is read is retried like one that could
        not be opened. A POST is retried only where that cannot make a second copy: the
        caller sends it conditional (If-None-Exist), so a retry of one the EHR did store
        finds it.
        """
        if not within_base(url, self.base):
            raise UnsafeLink("refusing to send the token outside the EHR's FHIR base")
        token = self.tokens.get()
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            self._in_time()
            try:
                self.requests += 1
                request = self.http.build_request(
                    method,
                    url,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Accept": accept,
                        **(headers or {}),
                    },
                    content=body,
                )
                response = self.http.send(request, stream=limit is not None)
                if response.status_code in ok:
                    if limit is None:
                        return response, response.content
                    try:
                        return response, self._read_capped(response, limit(response))
                    finally:
                        response.close()
            except httpx.TransportError as exc:
                if attempt >= self.settings.max_attempts:
                    raise EhrUnavailable(
                        f"the EHR could not be reached or stopped sending ({type(exc).__name__})"
                    ) from None
                self._wait(attempt, None)
                continue
            response.close()
            if response.status_code == 401 and not refreshed:
                refreshed = True
                token = self.tokens.refused(token)
                continue
            if response.status_code in RETRY_STATUSES:
                if attempt >= self.settings.max_attempts:
                    raise EhrBusy(
                        f"the EHR kept answering {response.status_code} after {attempt} attempts"
                    )
                self._wait(attempt, retry_after(response.headers.get("Retry-After")))
                continue
            if response.status_code >= 500:
                if attempt >= self.settings.max_attempts:
                    raise EhrUnavailable(f"the EHR answered {response.status_code}")
                self._wait(attempt, None)
                continue
            raise FhirRequestError(f"the EHR answered {response.status_code}", response.status_code)

    def _read_capped(self, response: httpx.Response, limit: int) -> bytes:
        """The body of a streamed response, refusing more than `limit` bytes (and, past the
        deadline, the rest of it)."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"the EHR announced {declared} bytes, over the cap of {limit}")
        chunks: list[bytes] = []
        total = 0
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > limit:
                raise TooLarge(f"the answer is larger than the cap of {limit} bytes")
            chunks.append(chunk)
            if self.deadline is not None:
                self._in_time()
        return b"".join(chunks)

    def create(self, resource: dict[str, Any], *, if_none_exist: str) -> tuple[str | None, bool]:
        """POST a resource only if nothing matches `if_none_exist` (a search query such as
        `identifier=system|value`); returns (the server's id, whether this request created it).
        """
        rtype = resource["resourceType"]
        response, _ = self._send(
            self.url(rtype),
            FHIR_JSON,
            method="POST",
            body=fhirjson.dumps_bytes(resource),
            headers={"Content-Type": FHIR_JSON, "If-None-Exist": if_none_exist},
            ok=(200, 201),
        )
        created = response.status_code == 201
        return _created_id(response, rtype), created

    def _in_time(self) -> None:
        if self.deadline is not None and self.clock() >= self.deadline:
            raise OutOfTime("the deadline of this client has passed")

    def _wait(self, attempt: int, suggested: float | None) -> None:
        """Retry-After when given, else exponential backoff with jitter; never above the cap,
        never past the deadline."""
        if suggested is None:
            suggested = 0.25 * 2 ** (attempt - 1) * (1 + random.random() / 2)  # noqa: S311  (jitter)
        delay = min(max(suggested, 0.0), self.settings.max_wait)
        if self.deadline is not None and self.clock() + delay >= self.deadline:
            raise OutOfTime("the deadline of this client would pass before a retry")
        log.info("EHR busy or unreachable; retrying in %.1f s (attempt %d)", delay, attempt)
        self.sleep(delay)


def json_object(data: bytes) -> Any:
    """JSON text as Python; Unreadable when it is not JSON or nested too deeply to read."""
    try:
        return fhirjson.loads(data)  # decimals with the digits the EHR sent
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python can go
        raise Unreadable("the EHR answered what is not JSON, or too deeply nested") from None


def _created_id(response: httpx.Response, rtype: str) -> str | None:
    """The id the EHR gave: from Location (`.../Type/id/_history/1`), else from the body."""
    location = response.headers.get("Location") or response.headers.get("Content-Location")
    if location:
        parts = location.split("/_history/")[0].rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == rtype:
            return parts[-1]
    try:
        body = json_object(response.content)
    except Unreadable:
        return None
    if isinstance(body, dict) and body.get("resourceType") == rtype:
        rid = body.get("id")
        return rid if isinstance(rid, str) else None
    return None


class TooLarge(FhirRequestError):
    """An answer over the size cap (a document, a search page): the rest of it is not read."""

    public_message = "This document is too large to fetch through the portal."


class TooManyPages(FhirRequestError):
    """A search went on past the number of pages the caller reads."""


class RepeatedPage(UnsafeLink):
    """A next link pointed back at a page of the same search (a loop)."""


class Unreadable(FhirRequestError):
    """The EHR answered something that is not JSON, or JSON nested too deeply to read."""


class OutOfTime(FhirRequestError):
    """The client's deadline passed: nothing more is asked or read."""


class EhrBusy(EhrUnavailable):
    """The EHR kept answering that it is busy (429/503) after every retry."""


@dataclass(frozen=True)
class BinaryContent:
    """A document's bytes and the media type the EHR gave them (None: it did not say)."""

    data: bytes
    content_type: str | None

    def __repr__(self) -> str:  # record contents stay out of logs and tracebacks
        return f"BinaryContent({len(self.data)} bytes, {self.content_type!r})"


def _media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def _binary_resource(body: bytes) -> BinaryContent | None:
    """The content of a FHIR JSON Binary; None when the JSON is something else."""
    resource = json_object(body)
    if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
        return None
    data = resource.get("data")
    if not isinstance(data, str):
        raise FhirRequestError("the EHR answered a Binary without content")
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise FhirRequestError("the EHR answered a Binary whose content is not base64") from None
    declared = resource.get("contentType")
    media = _media_type(declared) if isinstance(declared, str) else ""
    return BinaryContent(decoded, media or None)
