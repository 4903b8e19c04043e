"""Application factory."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response

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
    db.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    htmx.init_app(app)

    from portal.smart import settings as smart_settings
    from portal.web import accounts, connect, entries, errors, home, records, session_pages
    from portal.web import sessions as browser_sessions

    smart_settings.init_app(app)
    browser_sessions.init_app(app)
    session_pages.install(app)

    app.register_blueprint(home.bp)
    app.register_blueprint(accounts.bp)
    app.register_blueprint(records.bp)
    app.register_blueprint(connect.bp)
    app.register_blueprint(entries.bp)
    errors.register(app)
    app.after_request(security_headers)
    return app


def security_headers(response: Response) -> Response:
    """Headers every page carries; no third-party origin is ever loaded.

    A view may set a stricter Content-Security-Policy of its own (downloads do).
    """
    from portal.web.framing import policy

    response.headers.setdefault("Content-Security-Policy", policy(db.session))
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response
