"""Fault controls: GET / POST / DELETE /admin/faults (only when FAULTS_ENABLED)."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, request

from portal.sandbox import faults
from portal.sandbox.db import sdb

bp = Blueprint("sandbox_admin", __name__)


@bp.before_request
def only_when_enabled():
    if not current_app.config["FAULTS_ENABLED"]:
        abort(404)


@bp.get("/faults")
def list_faults():
    return jsonify(active=faults.current(sdb.session), available=faults.FAULTS)


@bp.post("/faults")
def set_faults():
    """Body: {"name": {"value": 2, "remaining": 3}, ...}; unknown names are a 400."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error="expected a JSON object of faults"), 400
    for name, spec in body.items():
        if name not in faults.FAULTS or not isinstance(spec, dict):
            return jsonify(error=f"unknown fault {name!r}"), 400
        value, remaining = spec.get("value", 1), spec.get("remaining")
        if not isinstance(value, int) or not (remaining is None or isinstance(remaining, int)):
            return jsonify(error=f"fault {name!r}: value and remaining must be integers"), 400
        faults.set_fault(sdb.session, name, value, remaining)
    return jsonify(active=faults.current(sdb.session))


@bp.delete("/faults")
def clear():
    faults.clear_faults(sdb.session)
    return jsonify(active={})
