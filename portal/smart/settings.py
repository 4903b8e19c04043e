"""What the SMART client needs from the app: keys, HTTP limits, and test seams.

`init_app(app)` builds it once from the configuration (the create_app hook). Functions of
`portal.smart` and `portal.sync` take `settings=` for tests and fall back to the current
app's (or, outside an app context, the last initialised) settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from flask import Flask, current_app, has_app_context
from joserfc.jwk import RSAKey

from portal.smart.crypto import TokenCipher, resolve_token_keys
from portal.smart.keys import load_client_key, public_jwks

EXTENSION = "smart"
_last: SmartSettings | None = None


@dataclass
class SmartSettings:
    """Keys and limits of outbound EHR traffic."""

    cipher: TokenCipher
    client_key: RSAKey | None = None  # the portal's key for private_key_jwt
    http_timeout: float = 10.0
    # Retries of FHIR requests on 429/503/network errors: attempts in all, cap of one wait.
    max_attempts: int = 5
    max_wait: float = 10.0
    refresh_margin: int = 60  # refresh when the access token expires within this many seconds
    refresh_lease: int = 20  # seconds one worker may hold a connection's refresh lease
    discovery_max_age: int = 600
    sleep: Callable[[float], None] = time.sleep
    transport: httpx.BaseTransport | None = None  # tests: a counting or fake transport
    # host, port -> addresses; None: the system's resolver (tests: one that records lookups)
    resolver: Callable[[str, int], list[str]] | None = None

    def http_client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client with the portal's timeout; redirects are never followed blindly."""
        kwargs.setdefault("timeout", self.http_timeout)
        kwargs.setdefault("follow_redirects", False)
        if self.transport is not None:
            kwargs.setdefault("transport", self.transport)
        return httpx.Client(**kwargs)


def settings_from_config(config: Any, instance_folder: Path) -> SmartSettings:
    """Settings from a config mapping; raises ConfigError when keys are unsafe or missing."""
    return SmartSettings(
        cipher=TokenCipher(resolve_token_keys(config, instance_folder)),
        client_key=load_client_key(config, instance_folder),
        http_timeout=float(config.get("SMART_HTTP_TIMEOUT", 10.0)),
        max_attempts=int(config.get("SMART_MAX_ATTEMPTS", 5)),
        max_wait=float(config.get("SMART_MAX_WAIT", 10.0)),
    )


def init_app(app: Flask) -> SmartSettings:
    """Build the SMART client settings of this app (call from create_app)."""
    global _last
    settings = settings_from_config(app.config, Path(app.instance_path))
    app.extensions[EXTENSION] = settings
    _last = settings
    return settings


def install(settings: SmartSettings) -> SmartSettings:
    """Make `settings` the default outside an app context (scripts, tests, benchmarks)."""
    global _last
    _last = settings
    return settings


def current() -> SmartSettings:
    """The current app's settings, else the last initialised ones."""
    if has_app_context():
        found: SmartSettings | None = current_app.extensions.get(EXTENSION)
        if found is not None:
            return found
    if _last is None:
        raise RuntimeError("portal.smart.settings.init_app(app) has not been called")
    return _last


def resolve(settings: SmartSettings | None) -> SmartSettings:
    return settings if settings is not None else current()


def client_jwks(settings: SmartSettings | None = None) -> dict[str, Any]:
    """The portal's public JWKS, to publish (e.g. at /.well-known/jwks.json) and register."""
    key = resolve(settings).client_key
    return public_jwks(key) if key is not None else {"keys": []}
