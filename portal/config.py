"""Configuration: defaults -> instance/config.py -> PORTAL_* environment variables."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask

MIN_SECRET_KEY_LENGTH = 32
KNOWN_WEAK_KEYS = {"dev", "secret", "changeme", "change-me", "development", "test"}


class ConfigError(RuntimeError):
    """The configuration is unsafe or incomplete; the app refuses to start."""


DEFAULTS: dict[str, Any] = {
    # "development" (local demo) or "production". Production refuses weak secrets.
    "ENV": "development",
    "DATABASE_URL": None,  # default: sqlite file in the instance folder
    "SESSION_COOKIE_NAME": "portal_session",
    "SESSION_COOKIE_HTTPONLY": True,
    # Lax, not Strict: Strict drops the session on the redirect back from the EHR.
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": False,
    "PUBLIC_URL": "http://127.0.0.1:5000",
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_HEADERS_ENABLED": True,
    "SIGNIN_RATE_LIMIT": "10 per minute",
    # Where password-reset links go: "console" (development) or "outbox" (tests).
    "MAIL_BACKEND": "console",
    # What one sync reads from an EHR at most; more ends it as incomplete, keeping what came.
    "SYNC_MAX_PAGES_PER_SEARCH": 1000,
    "SYNC_MAX_RECORDS_PER_RUN": 200_000,
    "SYNC_MAX_PAGE_BYTES": 20 * 1024 * 1024,
    "SYNC_RUN_DEADLINE_SECONDS": 900,
}


def instance_path() -> str:
    """The instance folder: PORTAL_INSTANCE_PATH, or ./instance of the working directory."""
    return os.path.abspath(os.environ.get("PORTAL_INSTANCE_PATH", "instance"))


def load_config(app: Flask, overrides: dict[str, Any] | None) -> None:
    """Fill app.config in order: defaults, instance/config.py, PORTAL_* env, test overrides."""
    app.config.from_mapping(DEFAULTS)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("PORTAL")
    if overrides:
        app.config.from_mapping(overrides)
    if not app.config.get("DATABASE_URL"):
        app.config["DATABASE_URL"] = "sqlite:///" + str(Path(app.instance_path) / "portal.db")
    if app.config["ENV"] == "production":
        app.config["SESSION_COOKIE_SECURE"] = True
    samesite = app.config["SESSION_COOKIE_SAMESITE"]
    if samesite not in ("Lax", "Strict", "None"):
        raise ConfigError("SESSION_COOKIE_SAMESITE must be Lax, Strict or None")
    if samesite == "None":
        # For EHRs that embed the portal in an iframe on another site: browsers send such a
        # cookie only over HTTPS. POSTs stay protected by the CSRF token.
        app.config["SESSION_COOKIE_SECURE"] = True
    app.config["SECRET_KEY"] = resolve_secret_key(app)


def resolve_secret_key(app: Flask) -> str:
    """Return a safe SECRET_KEY; in development generate one once and keep it in the instance."""
    key = app.config.get("SECRET_KEY")
    if app.config["ENV"] == "production":
        if not is_strong_secret(key):
            raise ConfigError(
                "PORTAL_SECRET_KEY must be set to a random value of at least "
                f"{MIN_SECRET_KEY_LENGTH} characters in production."
            )
        return str(key)
    if key:
        return str(key)
    return instance_secret(Path(app.instance_path), "secret_key")


def is_strong_secret(key: object) -> bool:
    """A secret is strong when it is long, not a known placeholder and not one repeated char."""
    if not isinstance(key, str) or len(key) < MIN_SECRET_KEY_LENGTH:
        return False
    return key.lower() not in KNOWN_WEAK_KEYS and len(set(key)) > 8


def instance_secret(folder: Path, name: str) -> str:
    """Read a generated secret from the instance folder, creating it (mode 0600) on first use."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value
