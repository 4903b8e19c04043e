"""Application factory."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app
from werkzeug.middleware.proxy_fix import ProxyFix

from portal import jobs
from portal.config import instance_path, load_config
from portal.extensions import csrf, db, htmx, limiter

ROOT = Path(__file__).resolve().parent.parent


# httpx logs every request URL at INFO; FHIR URLs name the patient.
logging.getLogger("httpx").setLevel(logging.WARNING)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the portal app; `config` overrides everything (tests)."""
    app = Flask(
        __name__,
        instance_path=instance_path(),
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    load_config(app, dict(config) if config else None)
    if app.config["TRUSTED_PROXY_COUNT"]:
        # request.remote_addr (the rate limits' key) from the trusted proxies' X-Forwarded-For.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]  # the documented way
            app.wsgi_app, x_for=app.config["TRUSTED_PROXY_COUNT"]
        )
    db.init_app(app)
    jobs.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    htmx.init_app(app)

    from portal.smart import settings as smart_settings
    from portal.web import (
        accounts,
        connect,
        entries,
        errors,
        home,
        records,
        redact,
        session_pages,
        shown,
    )
    from portal.web import sessions as browser_sessions

    smart_settings.init_app(app)
    redact.install(app)
    browser_sessions.init_app(app)
    session_pages.install(app)
    shown.install(app)

    app.register_blueprint(home.bp)
    app.register_blueprint(accounts.bp)
    app.register_blueprint(records.bp)
    app.register_blueprint(connect.bp)
    app.register_blueprint(entries.bp)
    errors.register(app)
    app.after_request(security_headers)
    return app


HSTS = "max-age=31536000; includeSubDomains"


def security_headers(response: Response) -> Response:
    """Headers every response carries, error pages included; no third-party origin is loaded.

    A view may set a stricter Content-Security-Policy of its own (downloads do).
    """
    from portal.web.caching import cache_policy
    from portal.web.framing import policy

    response.headers.setdefault("Content-Security-Policy", policy(db.session))
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if current_app.config["ENV"] == "production":  # development is served over plain http
        response.headers["Strict-Transport-Security"] = HSTS
    return cache_policy(response)
