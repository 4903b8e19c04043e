"""SMART and OpenID discovery documents, and the JWKS they point at."""

from __future__ import annotations

import httpx
from flask import Flask
from joserfc.jwk import KeySet

from tests.sandbox.flows import BASE_URL, FHIR_BASE

CAPABILITIES = {
    "launch-ehr",
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-v1",
    "permission-v2",
    "sso-openid-connect",
    "context-banner",
    "context-style",
}


def test_smart_configuration(http: httpx.Client) -> None:
    answer = http.get("/fhir/.well-known/smart-configuration")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["access-control-allow-origin"] == "*"
    conf = answer.json()
    assert conf["issuer"] == FHIR_BASE
    assert conf["jwks_uri"] == f"{BASE_URL}/auth/jwks"
    assert conf["authorization_endpoint"] == f"{BASE_URL}/auth/authorize"
    assert conf["token_endpoint"] == f"{BASE_URL}/auth/token"
    assert conf["revocation_endpoint"] == f"{BASE_URL}/auth/revoke"
    assert conf["introspection_endpoint"] == f"{BASE_URL}/auth/introspect"
    assert conf["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "private_key_jwt",
    ]
    assert conf["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert conf["response_types_supported"] == ["code"]
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert set(conf["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert set(conf["capabilities"]) == CAPABILITIES
    for scope in ("openid", "fhirUser", "launch", "launch/patient", "offline_access"):
        assert scope in conf["scopes_supported"]
    assert "patient/*.rs" in conf["scopes_supported"]
    assert "patient/*.read" in conf["scopes_supported"]


def test_openid_configuration(http: httpx.Client) -> None:
    conf = http.get("/fhir/.well-known/openid-configuration").json()
    smart = http.get("/fhir/.well-known/smart-configuration").json()
    assert conf["issuer"] == FHIR_BASE
    for name in ("jwks_uri", "authorization_endpoint", "token_endpoint"):
        assert conf[name] == smart[name]
    assert conf["id_token_signing_alg_values_supported"] == ["RS256"]
    assert conf["subject_types_supported"] == ["public"]
    assert conf["response_types_supported"] == ["code"]
    assert "fhirUser" in conf["claims_supported"]


def test_jwks_is_the_public_signing_key(http: httpx.Client, sandbox_app: Flask) -> None:
    jwks_uri = http.get("/fhir/.well-known/smart-configuration").json()["jwks_uri"]
    answer = http.get(jwks_uri)
    assert answer.status_code == 200
    body = answer.json()
    assert len(body["keys"]) == 1
    key = body["keys"][0]
    assert key["kty"] == "RSA"
    assert key["kid"] == sandbox_app.extensions["sandbox_signing_key"].kid
    assert "d" not in key and "p" not in key  # never the private part
    KeySet.import_key_set(body)  # a valid JWKS


def test_smart_style_file_is_served(http: httpx.Client) -> None:
    answer = http.get("/ehr-static/smart-style.json")
    assert answer.status_code == 200
    style = answer.json()
    for key in ("color_background", "color_highlight", "font_family_body"):
        assert style[key]
