"""Sandbox EHR application factory. One app = one EHR instance on its own origin."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from portal.config import instance_path, instance_secret
from portal.sandbox.db import sandbox_engine, sdb
from portal.sandbox.keys import load_signing_key
from portal.sandbox.oauth import init_app as init_oauth

HERE = Path(__file__).resolve().parent

DEFAULTS: dict[str, Any] = {
    "NAME": "Sandbox EHR",
    "SLUG": "ehr",  # names files and cookies of this instance
    "BASE_URL": "http://127.0.0.1:5001",
    "DATABASE_URL": None,  # default: sqlite file in the instance folder
    "DB_SCHEMA": None,  # PostgreSQL schema, so two instances can share one database
    "DEMO": False,  # list demo logins on the login page
    "FAULTS_ENABLED": False,  # allow /admin/faults
    # HTTP Basic password (user "admin") of /admin/faults; None: generated into the instance
    # folder (sandbox-<slug>-admin-password) on first start.
    "ADMIN_PASSWORD": None,
    "ACCESS_TOKEN_LIFETIME": 3600,
    "CODE_LIFETIME": 60,
    "LAUNCH_LIFETIME": 300,
    "DEFAULT_PAGE_SIZE": 50,
    "MAX_PAGE_SIZE": 1000,
}


def admin_password_file(slug: str) -> str:
    """The name, in the instance folder, of instance `slug`'s generated admin password."""
    return f"sandbox-{slug}-admin-password"


def create_sandbox_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build one sandbox EHR instance."""
    app = Flask(
        __name__,
        instance_path=instance_path(),
        template_folder=str(HERE / "templates"),
        static_folder=str(HERE / "static"),
        static_url_path="/ehr-static",
    )
    app.config.from_mapping(DEFAULTS)
    if config:
        app.config.from_mapping(config)
    slug = app.config["SLUG"]
    folder = Path(app.instance_path)
    app.config["BASE_URL"] = app.config["BASE_URL"].rstrip("/")
    app.config["FHIR_BASE"] = app.config["BASE_URL"] + "/fhir"
    app.config.setdefault("SECRET_KEY", None)
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = instance_secret(folder, f"sandbox-{slug}-secret")
    if not app.config["ADMIN_PASSWORD"]:
        app.config["ADMIN_PASSWORD"] = instance_secret(folder, admin_password_file(slug))
    # Cookies are not isolated by port: every instance needs its own cookie name.
    app.config["SESSION_COOKIE_NAME"] = f"sandbox_{slug}_session"
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    if not app.config["DATABASE_URL"]:
        app.config["DATABASE_URL"] = "sqlite:///" + str(folder / f"sandbox-{slug}.db")
    app.extensions["sandbox_signing_key"] = load_signing_key(folder / f"sandbox-{slug}-key.json")

    sdb.init_app(app, sandbox_engine(app.config["DATABASE_URL"], app.config["DB_SCHEMA"]))
    init_oauth(app)

    from portal.sandbox.views import admin, fhir, home, oauth

    app.register_blueprint(home.bp)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(fhir.bp, url_prefix="/fhir")
    app.register_blueprint(admin.bp, url_prefix="/admin")
    return app
