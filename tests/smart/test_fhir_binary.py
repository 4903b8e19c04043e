"""Documents from the FHIR client: the same token rules and retries as FHIR reads, the
attachment's own media type asked for, a size cap, FHIR JSON Binaries decoded."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest

from portal.smart.errors import EhrUnavailable, FhirRequestError, UnsafeLink
from portal.smart.fhir import TooLarge
from portal.smart.scopes import parse_grants, requested_scope
from tests.smart.test_fhir import BASE, client_for

PDF = b"%PDF-1.4\n% a small document\n%%EOF\n"
URL = BASE + "/Binary/123"


def pdf(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=PDF, headers={"Content-Type": "application/pdf"})


def binary_json(data: bytes, content_type: str | None = "application/pdf") -> httpx.Response:
    body: dict[str, object] = {"resourceType": "Binary", "id": "123"}
    if content_type:
        body["contentType"] = content_type
    body["data"] = base64.b64encode(data).decode()
    return httpx.Response(200, json=body, headers={"Content-Type": "application/fhir+json"})


def test_asks_for_the_attachment_type_with_the_token_and_answers_the_body() -> None:
    client, seen, _, _ = client_for(pdf)
    found = client.binary(URL, "application/pdf")
    assert found.data == PDF and found.content_type == "application/pdf"
    (request,) = seen
    assert request.url == URL
    assert request.headers["Accept"] == "application/pdf"
    assert request.headers["Authorization"] == "Bearer token-1"
    assert "bytes" in repr(found) and "PDF" not in repr(found)  # content stays out of logs


@pytest.mark.parametrize("content_type", [None, "", "not a type", "text/plain\r\nX-Evil: 1"])
def test_without_a_usable_content_type_anything_is_accepted(content_type: str | None) -> None:
    client, seen, _, _ = client_for(pdf)
    client.binary(URL, content_type)
    assert seen[0].headers["Accept"] == "*/*"
    assert "X-Evil" not in seen[0].headers


def test_content_type_parameters_are_left_out_of_accept() -> None:
    client, seen, _, _ = client_for(pdf)
    client.binary(URL, "Text/Plain; charset=utf-8")
    assert seen[0].headers["Accept"] == "text/plain"


def test_a_fhir_json_binary_is_decoded() -> None:
    client, _, _, _ = client_for(lambda _r: binary_json(PDF))
    found = client.binary(URL, "application/pdf")
    assert found.data == PDF and found.content_type == "application/pdf"


def test_a_binary_without_a_content_type_says_none() -> None:
    client, _, _, _ = client_for(lambda _r: binary_json(PDF, None))
    assert client.binary(URL).content_type is None


def test_json_that_is_not_a_binary_is_the_document_itself() -> None:
    body = json.dumps({"hello": "world"}).encode()

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    client, _, _, _ = client_for(handler)
    found = client.binary(URL, "application/json")
    assert found.data == body and found.content_type == "application/json"


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Binary", "contentType": "application/pdf"},
        {"resourceType": "Binary", "data": "not base64 !!"},
    ],
)
def test_a_binary_without_readable_content_is_an_error(body: dict[str, str]) -> None:
    client, _, _, _ = client_for(lambda _r: httpx.Response(200, json=body))
    with pytest.raises(FhirRequestError):
        client.binary(URL)


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/r4/fhir/Binary/123",
        "https://ehr.example/r4/other/Binary/123",
        "http://ehr.example/r4/fhir/Binary/123",
    ],
)
def test_never_requested_outside_the_base(url: str) -> None:
    client, seen, _, _ = client_for(pdf)
    with pytest.raises(UnsafeLink):
        client.binary(url, "application/pdf")
    assert seen == []


def test_401_refreshes_once_and_retries() -> None:
    answers = iter([httpx.Response(401), pdf(httpx.Request("GET", URL))])
    client, seen, _, tokens = client_for(lambda _r: next(answers))
    assert client.binary(URL, "application/pdf").data == PDF
    assert tokens.refusals == ["token-1"]
    assert [r.headers["Authorization"] for r in seen] == ["Bearer token-1", "Bearer token-2"]


def test_a_second_401_is_not_retried_again() -> None:
    client, seen, _, tokens = client_for(lambda _r: httpx.Response(401))
    with pytest.raises(FhirRequestError) as raised:
        client.binary(URL)
    assert raised.value.status_code == 401
    assert len(seen) == 2 and len(tokens.refusals) == 1


def test_429_honours_retry_after() -> None:
    answers = iter(
        [httpx.Response(429, headers={"Retry-After": "3"}), pdf(httpx.Request("GET", URL))]
    )
    client, seen, sleeps, _ = client_for(lambda _r: next(answers))
    assert client.binary(URL, "application/pdf").data == PDF
    assert sleeps == [3.0] and len(seen) == 2


def test_503_is_retried_a_bounded_number_of_times() -> None:
    handler = lambda _r: httpx.Response(503, headers={"Retry-After": "1"})  # noqa: E731
    client, seen, sleeps, _ = client_for(handler)
    with pytest.raises(EhrUnavailable):
        client.binary(URL)
    assert len(seen) == client.settings.max_attempts
    assert sleeps == [1.0] * (client.settings.max_attempts - 1)


def test_an_unreachable_ehr_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client, seen, _, _ = client_for(handler)
    with pytest.raises(EhrUnavailable):
        client.binary(URL)
    assert len(seen) == client.settings.max_attempts


def test_not_found_keeps_its_status() -> None:
    client, _, _, _ = client_for(lambda _r: httpx.Response(404))
    with pytest.raises(FhirRequestError) as raised:
        client.binary(URL)
    assert raised.value.status_code == 404


def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    client, _, _, _ = client_for(pdf)
    with pytest.raises(TooLarge):
        client.binary(URL, "application/pdf", max_bytes=len(PDF) - 1)
    assert client.binary(URL, "application/pdf", max_bytes=len(PDF)).data == PDF


def test_a_streamed_body_over_the_cap_stops_being_read() -> None:
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        for n in range(1000):
            sent.append(n)
            yield b"x" * 1024

    def handler(_request: httpx.Request) -> httpx.Response:
        # No Content-Length: only counting while reading can tell.
        return httpx.Response(200, content=chunks(), headers={"Content-Type": "image/png"})

    client, _, _, _ = client_for(handler)
    with pytest.raises(TooLarge):
        client.binary(URL, "image/png", max_bytes=10 * 1024)
    assert len(sent) < 20


def test_a_decoded_binary_over_the_cap_is_refused() -> None:
    client, _, _, _ = client_for(lambda _r: binary_json(b"y" * 2000))
    with pytest.raises(TooLarge):
        client.binary(URL, max_bytes=1000)


# --- the scope that lets the portal read them ------------------------------------------------


@pytest.mark.parametrize(
    ("capabilities", "scope"),
    [(["permission-v2"], "patient/Binary.r"), (["permission-v1"], "patient/Binary.read")],
)
def test_binary_is_requested_for_reading_only(capabilities: list[str], scope: str) -> None:
    for ehr_launch in (True, False):
        requested = requested_scope(capabilities, ehr_launch=ehr_launch).split()
        assert scope in requested
        (grant,) = [g for g in parse_grants(" ".join(requested)) if g.resource_type == "Binary"]
        assert grant.can_read
