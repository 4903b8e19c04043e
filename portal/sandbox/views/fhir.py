"""FHIR R4 API (read, vread, search, create) under /fhir.

Each view: resolve the type (404), apply injected faults, authenticate (401), then let
portal.sandbox.fhir decide access and do the work. Every error is an OperationOutcome.

A Binary is read as its own content (with its contentType) unless the request asks for FHIR
JSON (`Accept: application/fhir+json` or `application/json`, or `_format=json`).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date

from portal.db import utcnow
from portal.sandbox import bearer, urls
from portal.sandbox.db import sdb
from portal.sandbox.fhir import api, capability, faulting
from portal.sandbox.fhir.access import Caller
from portal.sandbox.fhir.create import create as create_resource
from portal.sandbox.fhir.registry import TYPES, resource_type
from portal.sandbox.fhir.search import parse_search
from portal.sandbox.outcome import FhirError, fhir_response, outcome

bp = Blueprint("sandbox_fhir", __name__)

JSON_TYPES = {"application/fhir+json", "application/json"}
FORM_TYPE = "application/x-www-form-urlencoded"


@bp.errorhandler(FhirError)
def fhir_error(err: FhirError):
    return err.response()


@bp.errorhandler(HTTPException)
def http_error(err: HTTPException):
    return outcome(err.code or 500, err.description or err.name)


@bp.get("/metadata")
def metadata():
    statement = capability.capability_statement(
        current_app.config["NAME"],
        urls.fhir_base(),
        {name: urls.absolute(name) for name in capability.OAUTH_ENDPOINTS},
        utcnow(),
    )
    return fhir_response(statement)


@bp.get("/<rtype>/<rid>")
def read(rtype, rid):
    info = resource_type(rtype)
    caller = _caller()
    row = api.read(sdb.session, caller, info, rid)
    if info.name == "Binary" and not _wants_fhir_json():
        return _binary_response(row.content)
    return _resource_response(row.content)


@bp.get("/<rtype>/<rid>/_history/<vid>")
def vread(rtype, rid, vid):
    info = resource_type(rtype)
    caller = _caller()
    content = api.vread(sdb.session, caller, info, rid, vid)
    if info.name == "Binary" and not _wants_fhir_json():
        return _binary_response(content)
    return _resource_response(content)


@bp.get("/<rtype>")
def search(rtype):
    return _search(rtype, list(request.args.items(multi=True)))


@bp.post("/<rtype>/_search")
def search_post(rtype):
    if request.content_length and request.mimetype != FORM_TYPE:
        raise FhirError(415, f"POST _search takes a {FORM_TYPE} body")
    params = list(request.args.items(multi=True)) + list(request.form.items(multi=True))
    return _search(rtype, params)


@bp.post("/<rtype>")
def create(rtype):
    info = resource_type(rtype)
    if not info.creatable:
        raise FhirError(405, f"Creating {info.name} resources is not supported")
    caller = _caller()
    result = create_resource(
        sdb.session,
        caller,
        info,
        _json_body(),
        fhir_base=urls.fhir_base(),
        if_none_exist=request.headers.get("If-None-Exist"),
    )
    row = result.row
    location = f"{urls.fhir_base()}/{row.resource_type}/{row.resource_id}/_history/{row.version_id}"
    if result.created:
        return _resource_response(row.content, 201, Location=location)
    if not caller.access.can(info.name, "r"):
        # Without read access the existing resource is only pointed at, not shown.
        return _outcome_info(f"A matching {info.name} already exists", Location=location)
    return _resource_response(row.content, Location=location)


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unsupported(rest):
    """Paths the routes above do not answer: other interactions on a type are 405, else 404."""
    parts = rest.split("/")
    shapes = (1, 2) if request.method != "GET" else ()  # every valid GET shape is routed
    if parts[0] in TYPES and all(parts) and len(parts) in shapes:
        raise FhirError(405, f"This interaction on {parts[0]} is not supported")
    raise FhirError(404, "No such FHIR endpoint")


def _search(rtype, params):
    info = resource_type(rtype)
    faults = _faults(search=True)
    caller = _authenticate()
    query = parse_search(
        info,
        params,
        fhir_base=urls.fhir_base(),
        default_count=current_app.config["DEFAULT_PAGE_SIZE"],
        max_count=current_app.config["MAX_PAGE_SIZE"],
        strict=_prefers_strict(),
    )
    bundle = api.search(sdb.session, caller, query, urls.fhir_base(), faults)
    return fhir_response(bundle)


def _caller() -> Caller:
    _faults(search=False)
    return _authenticate()


def _faults(search: bool) -> faulting.SearchFaults:
    return faulting.inject(sdb.session, sdb.sessionmaker(current_app), search=search)


def _authenticate() -> Caller:
    token = bearer.authenticate(sdb.session, request.headers.get("Authorization"))
    return Caller.from_token(token)


def _prefers_strict() -> bool:
    prefs = {p.strip() for h in request.headers.getlist("Prefer") for p in h.split(",")}
    return "handling=strict" in prefs


def _json_body():
    if request.mimetype not in JSON_TYPES:
        raise FhirError(415, "The body must be application/fhir+json")
    try:
        return json.loads(request.get_data())
    except ValueError:
        raise FhirError(400, "The body is not valid JSON") from None


def _resource_response(resource, status=200, **headers):
    meta = resource.get("meta", {})
    headers["ETag"] = f'W/"{meta.get("versionId", "1")}"'
    if "lastUpdated" in meta:
        modified = datetime.fromisoformat(meta["lastUpdated"].replace("Z", "+00:00"))
        headers["Last-Modified"] = http_date(modified)
    return fhir_response(resource, status, **headers)


def _wants_fhir_json() -> bool:
    """Whether the request names FHIR JSON itself (a wildcard asks for the native content)."""
    if request.args.get("_format") in ("json", *JSON_TYPES):
        return True
    return any(
        value.split(";")[0].strip().lower() in JSON_TYPES and quality > 0
        for value, quality in request.accept_mimetypes
    )


def _binary_response(resource):
    """A Binary's content as itself; opened in a browser it runs nothing at this origin."""
    try:
        data = base64.b64decode(resource.get("data") or "", validate=True)
    except (binascii.Error, ValueError):
        raise FhirError(500, "The stored Binary content is not valid base64") from None
    response = Response(data, status=200)
    response.headers["Content-Type"] = resource.get("contentType") or "application/octet-stream"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    meta = resource.get("meta", {})
    response.headers["ETag"] = f'W/"{meta.get("versionId", "1")}"'
    if "lastUpdated" in meta:
        modified = datetime.fromisoformat(meta["lastUpdated"].replace("Z", "+00:00"))
        response.headers["Last-Modified"] = http_date(modified)
    return response


def _outcome_info(message, **headers):
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "duplicate", "diagnostics": message}],
    }
    return fhir_response(body, **headers)
