"""The sandbox's front page: what this EHR is and where to start."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from portal.sandbox.urls import PATHS

bp = Blueprint("sandbox_home", __name__)


@bp.get("/")
def index():
    return render_template(
        "sandbox/home.html",
        name=current_app.config["NAME"],
        fhir_base=current_app.config["FHIR_BASE"],
        paths=PATHS,
    )
