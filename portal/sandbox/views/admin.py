"""Fault controls: GET / POST / DELETE /admin/faults (only when FAULTS_ENABLED).

HTTP Basic as `admin` with the instance's ADMIN_PASSWORD (generated into the instance folder
and printed by `portal demo`): anyone else on the demo's network could switch faults on.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, abort, current_app, jsonify, request

from portal.sandbox import faults
from portal.sandbox.db import sdb

bp = Blueprint("sandbox_admin", __name__)

ADMIN_USER = "admin"


@bp.before_request
def only_when_enabled_and_authorized():
    if not current_app.config["FAULTS_ENABLED"]:
        abort(404)
    auth = request.authorization
    expected = str(current_app.config["ADMIN_PASSWORD"]).encode()
    if (
        auth is None
        or auth.type != "basic"
        or not hmac.compare_digest((auth.username or "").encode(), ADMIN_USER.encode())
        or not hmac.compare_digest((auth.password or "").encode(), expected)
    ):
        response = jsonify(error="the fault controls need the sandbox's admin password")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="sandbox fault controls"'
        return response
    return None


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
