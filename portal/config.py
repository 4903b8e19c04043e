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
    "SESSION_COOKIE_NAME": "portal_session",  # "__Host-portal_session" in production
    # Server-side sessions (portal.web.sessions): seconds.
    "SESSION_IDLE_TIMEOUT": 15 * 60,
    "SESSION_ABSOLUTE_TIMEOUT": 12 * 60 * 60,
    "SESSION_IDLE_WARNING": 60,
    # Redis for everything that uses it (sessions, rate limits, later the job queue); None:
    # the embedded defaults (the database, memory), through the same code paths.
    "REDIS_URL": None,
    "REDIS_KEY_PREFIX": "portal:",
    "SESSION_COOKIE_HTTPONLY": True,
    # Lax, not Strict: Strict drops the session on the redirect back from the EHR.
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": False,
    "PUBLIC_URL": "http://127.0.0.1:5000",
    "RATELIMIT_ENABLED": True,
    # Overrides REDIS_URL for the limits only; neither set: memory:// (one process only).
    "RATELIMIT_STORAGE_URI": None,
    "RATELIMIT_KEY_PREFIX": "portal",
    "RATELIMIT_HEADERS_ENABLED": True,
    "SIGNIN_RATE_LIMIT": "10 per minute",
    # /launch, /oauth/callback and /connect/<id>, per client address.
    "LAUNCH_RATE_LIMIT": "30 per minute",
    # Reverse proxies in front of the portal whose X-Forwarded-For is believed; 0 ignores the
    # header (anyone could write it), so limits are per connecting address.
    "TRUSTED_PROXY_COUNT": 0,
    # Request bodies larger than this are refused with a page; a view that takes uploads
    # raises it for itself only (request.max_content_length).
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    # Failed sign-ins per email (whatever the address they come from), then a pause.
    "SIGNIN_ACCOUNT_FAILURE_LIMIT": "10 per 15 minutes",
    # argon2 hashes/verifies at once per process (each takes a core and 19 MiB while it runs).
    "PASSWORD_MAX_CONCURRENT_VERIFIES": 2,
    # Mail (sign-up links, password resets): "console" (development: printed to stderr),
    # "outbox" (tests) or "smtp" (required in production).
    "MAIL_BACKEND": "console",
    "MAIL_FROM": None,
    "MAIL_SMTP_HOST": None,
    "MAIL_SMTP_PORT": 587,
    "MAIL_SMTP_USER": None,
    "MAIL_SMTP_PASSWORD": None,
    "MAIL_SMTP_STARTTLS": True,
    # Background jobs (portal.jobs): on Redis with REDIS_URL, else a SQLite file in the
    # instance folder; the tests run each one in-process when enqueued (JOBS_EAGER).
    "JOBS_EAGER": False,
    # What one sync reads from an EHR at most; more ends it as incomplete, keeping what came.
    "SYNC_MAX_PAGES_PER_SEARCH": 1000,
    "SYNC_MAX_RECORDS_PER_RUN": 200_000,
    "SYNC_MAX_PAGE_BYTES": 20 * 1024 * 1024,
    "SYNC_RUN_DEADLINE_SECONDS": 900,
    # How records are shown to a person who has not chosen (portal.accounts.shown): "metric"
    # or "us", and an IANA time zone until their browser or the account page gives theirs.
    "DEFAULT_UNITS": "metric",
    "DEFAULT_TIME_ZONE": "UTC",
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
        # __Host-: the browser takes it only over HTTPS, for this host and path "/" alone.
        name = str(app.config["SESSION_COOKIE_NAME"])
        if not name.startswith("__Host-"):
            app.config["SESSION_COOKIE_NAME"] = "__Host-" + name
        if app.config.get("SESSION_COOKIE_DOMAIN") or app.config.get(
            "SESSION_COOKIE_PATH", "/"
        ) not in (None, "/"):
            raise ConfigError("A __Host- session cookie takes no domain and the path /.")
    samesite = app.config["SESSION_COOKIE_SAMESITE"]
    if samesite not in ("Lax", "Strict", "None"):
        raise ConfigError("SESSION_COOKIE_SAMESITE must be Lax, Strict or None")
    if samesite == "None":
        # For EHRs that embed the portal in an iframe on another site: browsers send such a
        # cookie only over HTTPS. POSTs stay protected by the CSRF token.
        app.config["SESSION_COOKIE_SECURE"] = True
    app.config["SECRET_KEY"] = resolve_secret_key(app)
    app.config["RATELIMIT_STORAGE_URI"] = (
        app.config["RATELIMIT_STORAGE_URI"] or app.config["REDIS_URL"] or "memory://"
    )
    proxies = app.config["TRUSTED_PROXY_COUNT"]
    if isinstance(proxies, bool) or not isinstance(proxies, int) or proxies < 0:
        raise ConfigError("TRUSTED_PROXY_COUNT must be a whole number, 0 or more")
    check_mail_settings(app.config)


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


def check_mail_settings(config: dict[str, Any]) -> None:
    """Refuse mail settings that would lose mail: production must really send it."""
    backend = config["MAIL_BACKEND"]
    if backend not in ("console", "outbox", "smtp"):
        raise ConfigError("PORTAL_MAIL_BACKEND must be console, outbox or smtp.")
    if config["ENV"] == "production" and backend != "smtp":
        # Else the pages would say a reset link was sent while it went nowhere.
        raise ConfigError(
            "In production the portal must send mail: set PORTAL_MAIL_BACKEND=smtp, "
            "PORTAL_MAIL_SMTP_HOST and PORTAL_MAIL_FROM (and PORTAL_MAIL_SMTP_USER and "
            "PORTAL_MAIL_SMTP_PASSWORD if the server needs a login)."
        )
    if backend == "smtp":
        if not config.get("MAIL_SMTP_HOST") or not config.get("MAIL_FROM"):
            raise ConfigError("PORTAL_MAIL_SMTP_HOST and PORTAL_MAIL_FROM must be set for smtp.")
        if (
            config["ENV"] == "production"
            and config.get("MAIL_SMTP_USER")
            and not config["MAIL_SMTP_STARTTLS"]
        ):
            raise ConfigError(
                "PORTAL_MAIL_SMTP_STARTTLS must stay on in production when logging in to the "
                "mail server: the password would otherwise travel unencrypted."
            )


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
