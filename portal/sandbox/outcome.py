"""FHIR responses: `application/fhir+json` bodies and OperationOutcome errors."""

from __future__ import annotations

import json
from typing import Any

from flask import Response

FHIR_JSON = "application/fhir+json"

# HTTP status -> OperationOutcome.issue.code
ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    500: "exception",
    503: "transient",
}


def fhir_response(body: dict[str, Any], status: int = 200, **headers: str) -> Response:
    """Serialize a FHIR resource with the FHIR JSON media type."""
    resp = Response(json.dumps(body, separators=(",", ":")), status=status, mimetype=FHIR_JSON)
    resp.headers["Content-Type"] = f"{FHIR_JSON}; charset=utf-8"
    for name, value in headers.items():
        resp.headers[name.replace("_", "-")] = value
    return resp


def outcome(status: int, diagnostics: str, **headers: str) -> Response:
    """An OperationOutcome error response; `diagnostics` never echoes record contents."""
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error" if status < 500 else "fatal",
                "code": ISSUE_CODES.get(status, "processing"),
                "diagnostics": diagnostics,
            }
        ],
    }
    return fhir_response(body, status, **headers)


class FhirError(Exception):
    """Raised anywhere in the FHIR API; rendered as an OperationOutcome."""

    def __init__(self, status: int, diagnostics: str, headers: dict[str, str] | None = None):
        super().__init__(diagnostics)
        self.status = status
        self.diagnostics = diagnostics
        self.headers = headers or {}

    def response(self) -> Response:
        return outcome(self.status, self.diagnostics, **self.headers)
