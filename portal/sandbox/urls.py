"""The sandbox's public endpoint URLs, in one place (discovery, CapabilityStatement, tests)."""

from __future__ import annotations

from flask import current_app

PATHS = {
    "authorize": "/auth/authorize",
    "token": "/auth/token",
    "revoke": "/auth/revoke",
    "introspect": "/auth/introspect",
    "jwks": "/auth/jwks",
    "login": "/auth/login",
    "launch_simulator": "/launch",
}


def absolute(name: str) -> str:
    """Absolute URL of a named endpoint on the current instance."""
    return str(current_app.config["BASE_URL"]) + PATHS[name]


def fhir_base() -> str:
    return str(current_app.config["FHIR_BASE"])
