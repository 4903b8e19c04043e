"""The portal's front page."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, current_app, render_template, send_from_directory
from werkzeug.wrappers import Response

from portal.extensions import db
from portal.models import EhrServer
from portal.smart.settings import client_jwks
from portal.web.caching import public

bp = Blueprint("home", __name__)


@bp.get("/")
def index() -> str:
    ehrs = db.session.scalars(sa.select(EhrServer).order_by(EhrServer.name)).all()
    return render_template(
        "web/home.html", ehrs=ehrs, demo_links=current_app.config.get("DEMO_LINKS", [])
    )


@bp.get("/.well-known/jwks.json")
@public(max_age=300)  # the same for everyone; short, so a rotated key is picked up soon
def jwks() -> dict[str, object]:
    """The portal's public keys, for EHRs that register it as a confidential-asymmetric client."""
    return client_jwks()


@bp.get("/favicon.ico")
@public(max_age=86400)
def favicon() -> Response:
    """Browsers ask for /favicon.ico before (or without) reading the page's icon link: the
    same icon (browsers go by its type, not the name)."""
    static = current_app.static_folder
    assert static is not None
    return send_from_directory(static, "favicon.svg", mimetype="image/svg+xml")


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    db.session.execute(sa.text("SELECT 1"))
    return {"status": "ok"}
