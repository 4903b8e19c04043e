"""The FHIR client: the token stays on the FHIR base, paging is safe, retries are bounded."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from portal.smart.crypto import TokenCipher
from portal.smart.errors import EhrUnavailable, FhirRequestError, UnsafeLink
from portal.smart.fhir import FhirClient, retry_after, within_base
from portal.smart.settings import SmartSettings

BASE = "https://ehr.example/r4/fhir"


class FakeTokens:
    def __init__(self) -> None:
        self.current = "token-1"
        self.refusals: list[str] = []

    def get(self) -> str:
        return self.current

    def refused(self, token: str) -> str:
        self.refusals.append(token)
        self.current = f"token-{len(self.refusals) + 1}"
        return self.current


def client_for(
    handler: Callable[[httpx.Request], httpx.Response],
) -> tuple[FhirClient, list[httpx.Request], list[float], FakeTokens]:
    seen: list[httpx.Request] = []
    sleeps: list[float] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    settings = SmartSettings(cipher=TokenCipher([Fernet.generate_key()]), sleep=sleeps.append)
    tokens = FakeTokens()
    http = httpx.Client(transport=httpx.MockTransport(record))
    return FhirClient(BASE, tokens, http, settings), seen, sleeps, tokens


def bundle(next_url: str | None = None, n: int = 1) -> dict[str, Any]:
    links = [{"relation": "self", "url": BASE + "/Observation"}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    entries = [{"resource": {"resourceType": "Observation", "id": str(i)}} for i in range(n)]
    return {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries}


@pytest.mark.parametrize(
    ("url", "inside"),
    [
        (BASE + "/Observation?x=1", True),
        (BASE, True),
        ("https://EHR.example:443/r4/fhir/Patient/1", True),
        ("https://ehr.example/r4/fhirX/Patient", False),
        ("https://ehr.example/r4/other", False),
        ("http://ehr.example/r4/fhir/Patient", False),
        ("https://ehr.example:8443/r4/fhir/Patient", False),
        ("https://evil.example/r4/fhir/Patient", False),
        ("https://ehr.example.evil.example/r4/fhir/Patient", False),
        ("https://user@ehr.example/r4/fhir/Patient", False),
        ("https://@ehr.example/r4/fhir/Patient", False),
        # one origin, however it is written: case, trailing dot, default port
        ("https://EHR.Example./r4/fhir/Patient/1", True),
        ("HTTPS://ehr.example.:443/r4/fhir/Patient/1", True),
        ("https://ehr.example:0443/r4/fhir/Patient/1", True),
        ("https://ehr.example:notaport/r4/fhir/Patient/1", False),
        ("https://ehr.example%2eevil.example/r4/fhir/Patient", False),
    ],
)
def test_what_counts_as_the_fhir_base(url: str, inside: bool) -> None:
    assert within_base(url, BASE) is inside


# `.` and `..` segments in every spelling a server, proxy or httpx itself may resolve
DOT_SEGMENT_PATHS = [
    "/../admin",
    "/Observation/../../admin",
    "/./Patient/1",
    "/Patient/..",
    "/%2e%2e/admin",
    "/%2E%2E/admin",
    "/%2E./admin",
    "/.%2e/admin",
    "/%2e/Patient/1",
    "/..%2fadmin",
    "/..%2Fadmin",
    "/%2e%2e%2fadmin",
    "/%2e%2e%2f%2e%2e%2fadmin",
    "/%252e%252e/admin",
    "/%252e%252e%252fadmin",
    "/%25252e%25252e/admin",
    "/..;/admin",
    "/%2e%2e;x=1/admin",
    "\\..\\admin",
    "/..\\admin",
    "/%5c..%5cadmin",
    "/%255c..%255cadmin",
    "/Patient%00/1",
    "/Patient/1%0a",
]


@pytest.mark.parametrize("path", DOT_SEGMENT_PATHS)
def test_dot_segments_in_any_encoding_are_outside_the_base(path: str) -> None:
    assert within_base(BASE + path, BASE) is False


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://h/fhir/Patient/1", "http://h:80/fhir"),
        ("http://h:80/fhir/Patient/1", "http://h/fhir"),
        ("https://xn--bcher-kva.example/fhir/Patient/1", "https://bücher.example/fhir"),
        ("https://BÜCHER.example./fhir/Patient/1", "https://xn--bcher-kva.example/fhir"),
        ("http://127.0.0.1:8001/fhir/Patient/1", "http://127.0.0.1:8001/fhir/"),
        ("http://[::1]:8001/fhir/Patient/1", "http://[::1]:8001/fhir"),
        ("https://ehr.example/r4/fhir/Patient?name=a..b", "https://ehr.example/r4/fhir"),
        ("https://ehr.example/r4/fhir/Binary/a..b", "https://ehr.example/r4/fhir"),
    ],
)
def test_one_origin_however_it_is_written(url: str, base: str) -> None:
    assert within_base(url, base) is True


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://h:8080/fhir/Patient/1", "http://h/fhir"),
        ("https://h/fhir/Patient/1", "http://h/fhir"),
        ("https://bucher.example/fhir/Patient/1", "https://bücher.example/fhir"),
        ("http://127.0.0.2:8001/fhir/Patient/1", "http://127.0.0.1:8001/fhir"),
    ],
)
def test_another_origin_is_outside(url: str, base: str) -> None:
    assert within_base(url, base) is False


def authorized(seen: list[httpx.Request]) -> list[str]:
    """The URLs that received the bearer token."""
    return [str(r.url) for r in seen if "authorization" in r.headers]


def test_token_is_never_sent_outside_the_base() -> None:
    client, seen, _, _ = client_for(lambda r: httpx.Response(200, json={}))
    with pytest.raises(UnsafeLink):
        client.get("https://evil.example/fhir/Patient/1")
    assert seen == []


def test_next_links_are_followed_and_the_token_sent_each_time() -> None:
    pages = {
        "": bundle(BASE + "/Observation?page=2"),
        "page=2": bundle(BASE + "/Observation?page=3"),
        "page=3": bundle(None),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        key = "" if "page" not in request.url.query.decode() else request.url.query.decode()
        return httpx.Response(200, json=pages[key.split("&")[0] if key else ""])

    client, seen, _, _ = client_for(handler)
    got = list(client.search("Observation", [("patient", "1")]))
    assert len(got) == 3
    assert [r.headers["authorization"] for r in seen] == ["Bearer token-1"] * 3


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/r4/fhir/Observation?page=2",
        "https://ehr.example/elsewhere/Observation?page=2",
        "http://ehr.example/r4/fhir/Observation?page=2",
    ],
)
def test_next_link_to_another_base_is_refused(next_url: str) -> None:
    client, seen, _, _ = client_for(lambda r: httpx.Response(200, json=bundle(next_url)))
    with pytest.raises(UnsafeLink, match="outside"):
        list(client.search("Observation", []))
    assert len(seen) == 1


def test_looping_next_link_is_refused_even_with_reordered_parameters() -> None:
    # The loop comes back as the first page's URL with its parameters in another order.
    loop = BASE + "/Observation?category=lab&patient=1"
    client, seen, _, _ = client_for(lambda r: httpx.Response(200, json=bundle(loop)))
    with pytest.raises(UnsafeLink, match="repeats"):
        list(client.search("Observation", [("patient", "1"), ("category", "lab")]))
    assert len(seen) == 1


def test_401_refreshes_once_and_retries() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] == "Bearer token-1":
            return httpx.Response(401)
        return httpx.Response(200, json={"resourceType": "Patient", "id": "1"})

    client, seen, _, tokens = client_for(handler)
    assert client.read("Patient", "1")["id"] == "1"
    assert tokens.refusals == ["token-1"]
    assert len(seen) == 2


def test_a_second_401_is_not_retried_again() -> None:
    client, seen, _, tokens = client_for(lambda r: httpx.Response(401))
    with pytest.raises(FhirRequestError) as failed:
        client.read("Patient", "1")
    assert failed.value.status_code == 401
    assert len(tokens.refusals) == 1 and len(seen) == 2


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_honoured(status: int) -> None:
    answers = [httpx.Response(status, headers={"Retry-After": "3"})] * 2 + [
        httpx.Response(200, json={"resourceType": "Patient", "id": "1"})
    ]
    client, seen, sleeps, _ = client_for(lambda r: answers[len(seen) - 1])
    assert client.read("Patient", "1")["id"] == "1"
    assert sleeps == [3.0, 3.0]


def test_retry_after_http_date_and_the_cap() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after(format_datetime(now + timedelta(seconds=7), usegmt=True), now) == 7.0
    assert retry_after(format_datetime(now - timedelta(seconds=7), usegmt=True), now) == 0.0
    assert retry_after("soon") is None and retry_after(None) is None
    answers = [
        httpx.Response(429, headers={"Retry-After": "120"}),
        httpx.Response(200, json={"resourceType": "Patient", "id": "1"}),
    ]
    client, seen, sleeps, _ = client_for(lambda r: answers[len(seen) - 1])
    client.read("Patient", "1")
    assert sleeps == [10.0]  # capped


def test_attempts_are_bounded_with_exponential_backoff() -> None:
    client, seen, sleeps, _ = client_for(lambda r: httpx.Response(503))
    with pytest.raises(EhrUnavailable):
        client.read("Patient", "1")
    assert len(seen) == 5 and len(sleeps) == 4
    assert all(b > a for a, b in itertools.pairwise(sleeps))
    assert max(sleeps) <= 10.0


def test_network_errors_are_retried_then_reported() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client, _, sleeps, _ = client_for(down)
    with pytest.raises(EhrUnavailable, match="could not be reached"):
        client.read("Patient", "1")
    assert len(sleeps) == 4


def test_client_errors_are_not_retried() -> None:
    client, seen, sleeps, _ = client_for(lambda r: httpx.Response(404, json={}))
    with pytest.raises(FhirRequestError):
        client.read("Patient", "nope")
    assert len(seen) == 1 and sleeps == []


@pytest.mark.parametrize("path", DOT_SEGMENT_PATHS)
def test_a_next_link_with_dot_segments_never_gets_the_token(path: str) -> None:
    first = BASE + "/Observation?patient=1"
    client, seen, _, _ = client_for(lambda r: httpx.Response(200, json=bundle(BASE + path)))
    with pytest.raises(UnsafeLink):
        list(client.search("Observation", [("patient", "1")]))
    assert authorized(seen) == [first]  # the first page only


@pytest.mark.parametrize(
    ("resource_type", "resource_id"),
    [
        ("Practitioner", ".."),  # a valid FHIR id, and a path segment that climbs
        ("Practitioner", "."),
        ("Patient", "../../admin"),  # the token response's `patient` is the EHR's word
        ("Patient", "%2e%2e/%2e%2e/admin"),
        ("Organization", "..%2f..%2fadmin"),
    ],
)
def test_a_reference_read_with_dot_segments_never_gets_the_token(
    resource_type: str, resource_id: str
) -> None:
    client, seen, _, _ = client_for(lambda r: httpx.Response(200, json={}))
    with pytest.raises(UnsafeLink):
        client.read(resource_type, resource_id)
    assert seen == []


@pytest.mark.parametrize("path", DOT_SEGMENT_PATHS)
def test_an_attachment_link_with_dot_segments_never_gets_the_token(path: str) -> None:
    client, seen, _, _ = client_for(lambda r: httpx.Response(200, content=b"%PDF-1.4"))
    with pytest.raises(UnsafeLink):
        client.binary(BASE + "/Binary" + path, "application/pdf")
    assert seen == []


def test_every_request_that_carries_the_token_is_under_the_base() -> None:
    """Reads, searches with their next links, documents and writes: all on the base."""
    pages = {
        "/r4/fhir/Observation": bundle(BASE + "/Observation?page=2"),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, headers={"Location": BASE + "/Observation/9/_history/1"})
        if request.url.path.endswith("/Binary/1"):
            return httpx.Response(
                200, content=b"%PDF-1.4", headers={"Content-Type": "application/pdf"}
            )
        if request.url.path in pages and "page" not in request.url.query.decode():
            return httpx.Response(200, json=pages[request.url.path])
        if request.url.path.endswith("/Observation"):
            return httpx.Response(200, json=bundle(None))
        return httpx.Response(200, json={"resourceType": "Patient", "id": "1"})

    client, seen, _, _ = client_for(handler)
    client.read("Patient", "1")
    assert len(list(client.search("Observation", [("patient", "1")]))) == 2
    client.binary(BASE + "/Binary/1", "application/pdf")
    client.create({"resourceType": "Observation"}, if_none_exist="identifier=x|1")
    sent = authorized(seen)
    assert len(sent) == 5
    assert all(within_base(url, BASE) and "/r4/fhir/" in url for url in sent)


def test_a_looping_next_link_in_another_spelling_of_the_origin_is_refused() -> None:
    loop = "https://EHR.example.:443/r4/fhir/Observation?patient=1"
    client, seen, _, _ = client_for(lambda r: httpx.Response(200, json=bundle(loop)))
    with pytest.raises(UnsafeLink, match="repeats"):
        list(client.search("Observation", [("patient", "1")]))
    assert len(seen) == 1
