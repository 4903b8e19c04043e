"""FHIR R4 API (read, vread, search, create) under /fhir."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("sandbox_fhir", __name__)
