"""SMART discovery, authorization server, patient login and consent, EHR launch simulator."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("sandbox_oauth", __name__)
