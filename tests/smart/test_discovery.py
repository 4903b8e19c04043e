"""SMART discovery, its cache, and scope syntax chosen from capabilities (checklist 2, 6)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from joserfc import jwt
from joserfc.jwk import RSAKey

from portal.db import transaction
from portal.registry import upsert_ehr
from portal.smart import discovery
from portal.smart.crypto import TokenCipher
from portal.smart.discovery import discover
from portal.smart.errors import DiscoveryError
from portal.smart.idtoken import validate_id_token
from portal.smart.oauth import begin, new_browser_binding
from portal.smart.settings import SmartSettings
from tests.live import REDIRECT_URI, params_of

BASE = "https://ehr.example/fhir"
CONFIG: dict[str, Any] = {
    "issuer": BASE,
    "authorization_endpoint": "../auth/authorize",  # relative: resolved against the FHIR base
    "token_endpoint": "https://ehr.example/auth/token",
    "revocation_endpoint": "/auth/revoke",
    "jwks_uri": "https://ehr.example/auth/jwks",
    "capabilities": ["launch-standalone", "client-public", "permission-v1", "sso-openid-connect"],
    "code_challenge_methods_supported": ["S256"],
    "scopes_supported": ["openid", "fhirUser", "patient/*.read"],
}


def fake_ehr(
    handler: Callable[[httpx.Request], httpx.Response],
) -> tuple[SmartSettings, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    settings = SmartSettings(
        cipher=TokenCipher([Fernet.generate_key()]), transport=httpx.MockTransport(record)
    )
    return settings, seen


def serve(body: dict[str, Any]) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, json=body)


def test_relative_urls_resolve_against_the_fhir_base() -> None:
    settings, seen = fake_ehr(serve(CONFIG))
    config = discover(BASE, settings=settings)
    assert str(seen[0].url) == BASE + "/.well-known/smart-configuration"
    assert config.authorization_endpoint == "https://ehr.example/auth/authorize"
    assert config.revocation_endpoint == "https://ehr.example/auth/revoke"
    assert config.token_endpoint == "https://ehr.example/auth/token"
    assert config.issuer == BASE
    assert config.has("permission-v1") and not config.has("permission-v2")
    assert config.scopes_supported == ("openid", "fhirUser", "patient/*.read")


@pytest.mark.parametrize(
    "change",
    [
        {"code_challenge_methods_supported": ["plain"]},
        {"code_challenge_methods_supported": None},
        {"token_endpoint": None},
        {"authorization_endpoint": ""},
        {"token_endpoint": "http://ehr.example/auth/token"},  # https base, http endpoint
        {"authorization_endpoint": "ftp://ehr.example/authorize"},
        {"token_endpoint": "https://user:pw@ehr.example/token"},
    ],
)
def test_unsafe_or_incomplete_configurations_are_refused(change: dict[str, Any]) -> None:
    body = {**CONFIG, **change}
    settings, _ = fake_ehr(serve({k: v for k, v in body.items() if v is not None}))
    with pytest.raises(DiscoveryError):
        discover(BASE, settings=settings)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(404, json={}),
        httpx.Response(200, text="<html>"),
        httpx.Response(200, json=["a list"]),
        httpx.Response(302, headers={"location": "https://evil.example/conf"}),
    ],
)
def test_bad_answers_are_refused(answer: httpx.Response) -> None:
    settings, seen = fake_ehr(lambda request: answer)
    with pytest.raises(DiscoveryError):
        discover(BASE, settings=settings)
    assert all(r.url.host == "ehr.example" for r in seen)  # never followed to another host


def test_same_host_redirect_is_followed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/smart-configuration"):
            return httpx.Response(301, headers={"location": "/fhir/conf.json"})
        return httpx.Response(200, json=CONFIG)

    settings, seen = fake_ehr(handler)
    assert discover(BASE, settings=settings).token_endpoint.endswith("/auth/token")
    assert len(seen) == 2


def test_unreachable_ehr_is_a_discovery_error() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    settings, _ = fake_ehr(down)
    with pytest.raises(DiscoveryError) as failed:
        discover(BASE, settings=settings)
    assert "try again in a few minutes" in failed.value.public_message
    assert failed.value.status == 503


def test_configuration_is_cached_for_a_bounded_time() -> None:
    settings, seen = fake_ehr(serve(CONFIG))
    discover(BASE, settings=settings)
    discover(BASE + "/", settings=settings)
    assert len(seen) == 1
    settings.discovery_max_age = 0  # entries written from now on are stale at once
    discovery.clear_cache()
    discover(BASE, settings=settings)
    discover(BASE, settings=settings)
    assert len(seen) == 3


def test_only_v1_capability_means_v1_scopes(factory) -> None:
    settings, _ = fake_ehr(serve(CONFIG))
    with transaction(factory) as session:
        ehr = upsert_ehr(session, name="V1 EHR", fhir_base=BASE, client_id="portal")
        url = begin(
            session,
            ehr,
            redirect_uri=REDIRECT_URI,
            browser_binding=new_browser_binding(),
            settings=settings,
        )
    params = params_of(url)
    assert url.startswith("https://ehr.example/auth/authorize?")
    scope = params["scope"].split()
    assert "patient/Observation.read" in scope and "patient/Condition.read" in scope
    assert not any(s.endswith(".rs") for s in scope)
    assert params["aud"] == BASE


def test_rotated_ehr_key_is_found_by_refetching_the_jwks_once(monkeypatch) -> None:
    old = RSAKey.generate_key(2048, {"alg": "RS256"}, auto_kid=True)
    new = RSAKey.generate_key(2048, {"alg": "RS256"}, auto_kid=True)
    published = {"keys": [old.as_dict(private=False)]}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/jwks"):
            return httpx.Response(200, json=published)
        return httpx.Response(200, json=CONFIG)

    settings, seen = fake_ehr(handler)
    config = discover(BASE, settings=settings)
    discovery.jwks(config.jwks_uri or "", settings=settings)  # cached: only the old key
    published = {"keys": [new.as_dict(private=False)]}  # the EHR rotates
    monkeypatch.setattr(discovery, "JWKS_REFETCH_INTERVAL", 0.0)
    now = int(time.time())
    claims = {"iss": BASE, "aud": "portal", "sub": "1", "exp": now + 60, "iat": now, "nonce": "n"}
    token = jwt.encode({"alg": "RS256", "kid": new.kid}, claims, new, algorithms=["RS256"])
    found = validate_id_token(
        token, config=config, client_id="portal", nonce="n", settings=settings
    )
    assert found["sub"] == "1"
    assert len([r for r in seen if r.url.path.endswith("/jwks")]) == 2
