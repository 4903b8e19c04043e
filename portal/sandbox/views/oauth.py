"""SMART discovery, authorization server, patient login and consent, EHR launch simulator."""

from __future__ import annotations

import re
import secrets
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import generate_csrf, validate_csrf
from werkzeug.exceptions import HTTPException
from wtforms import ValidationError

from portal.db import utcnow
from portal.sandbox import accounts
from portal.sandbox.db import sdb
from portal.sandbox.keys import public_jwks
from portal.sandbox.models import Client, Clinician, FhirResource, LaunchContext, PatientUser
from portal.sandbox.oauth import (
    ID_TOKEN_ALG,
    acting_user,
    default_style_url,
    person_name,
    server,
)
from portal.sandbox.scopes import IDENTITY_SCOPES, LAUNCH_SCOPES, REFRESH_SCOPES, parse_scope
from portal.sandbox.urls import PATHS, absolute, fhir_base

bp = Blueprint("sandbox_oauth", __name__)

SESSION_USER = "sandbox_user_id"
SESSION_AUTH_TIME = "sandbox_auth_time"
# The clinician the launch simulator is working as (a Practitioner id); see launch_simulator.
SESSION_CLINICIAN = "sandbox_clinician"
ROLES = {
    "portal": "The patient, from the EHR's patient portal",
    "clinician": "A clinician, from the patient's chart",
}

CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-v1",
    "permission-v2",
    "sso-openid-connect",
    "context-banner",
    "context-style",
]
SCOPES_SUPPORTED = [
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
    "patient/*.rs",
    "patient/*.cruds",
    "patient/*.read",
    "patient/*.write",
    "patient/*.*",
    "user/*.rs",
    "user/*.read",
]
TOKEN_AUTH_METHODS_SUPPORTED = ["client_secret_basic", "private_key_jwt"]


# --- pages: shared bits --------------------------------------------------------------------------


@bp.after_request
def page_headers(response: Response) -> Response:
    """Pages of the authorization server are never framed, cached or leak their URL."""
    if response.mimetype == "text/html":
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.context_processor
def template_helpers() -> dict[str, Any]:
    return {"csrf_token": generate_csrf}


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException):
    return error_page(error.code or 500, error.name, error.description or "")


def error_page(status: int, title: str, message: str, detail: str | None = None):
    page = render_template("sandbox/error.html", title=title, message=message, detail=detail)
    return page, status


def current_user() -> PatientUser | None:
    user_id = session.get(SESSION_USER)
    if not isinstance(user_id, int):
        return None
    return sdb.session.get(PatientUser, user_id)


def sign_in(user: PatientUser) -> None:
    """A fresh session for this patient (no fixation: the old session's contents are dropped)."""
    session.clear()
    session[SESSION_USER] = user.id
    session[SESSION_AUTH_TIME] = int(time.time())


def work_as_clinician(practitioner_id: str) -> None:
    """A fresh session of a clinician at work in the EHR (the simulator's clinician role)."""
    session.clear()
    session[SESSION_CLINICIAN] = practitioner_id
    session[SESSION_AUTH_TIME] = int(time.time())


def csrf_ok() -> bool:
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError:
        return False
    return True


def csrf_refused():
    return error_page(
        400,
        "This form has expired",
        "The page was open too long or was sent from elsewhere. Go back, reload it and try again.",
    )


def safe_next(target: str | None) -> str | None:
    """`target` if it is a path on this server, else None (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


# --- discovery -----------------------------------------------------------------------------------


def _endpoints() -> dict[str, Any]:
    return {
        "issuer": fhir_base(),
        "jwks_uri": absolute("jwks"),
        "authorization_endpoint": absolute("authorize"),
        "token_endpoint": absolute("token"),
        "revocation_endpoint": absolute("revoke"),
        "introspection_endpoint": absolute("introspect"),
        "token_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS_SUPPORTED,
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
    }


def _public_json(body: dict[str, Any]) -> Response:
    response = jsonify(body)
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/fhir/.well-known/smart-configuration")
def smart_configuration():
    return _public_json({**_endpoints(), "capabilities": CAPABILITIES})


@bp.get("/fhir/.well-known/openid-configuration")
def openid_configuration():
    body = _endpoints()
    body.update(
        {
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ID_TOKEN_ALG],
            "claims_supported": [
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "at_hash",
                "fhirUser",
                "name",
            ],
            "response_modes_supported": ["query"],
        }
    )
    return _public_json(body)


@bp.get(PATHS["jwks"])
def jwks():
    return _public_json(public_jwks(current_app.extensions["sandbox_signing_key"]))


# --- token, revocation, introspection ------------------------------------------------------------


@bp.post(PATHS["token"])
def token():
    return server().create_token_response()


@bp.post(PATHS["revoke"])
def revoke():
    return server().create_endpoint_response("revocation")


@bp.post(PATHS["introspect"])
def introspect():
    return server().create_endpoint_response("introspection")


# --- authorize and consent -----------------------------------------------------------------------


@bp.route(PATHS["authorize"], methods=["GET", "POST"])
def authorize():
    """Validate the request, make sure a patient is signed in, ask for consent, answer."""
    srv = server()
    user = current_user()
    try:
        grant = srv.get_consent_grant(end_user=user)
    except OAuth2Error as error:
        if error.redirect_uri:  # the client and its redirect URI are known good
            return srv.handle_error_response(None, error)
        return error_page(
            400,
            "This app's sign-in request is not valid",
            "The app that sent you here asked for access in a way this EHR cannot accept, "
            "so nothing was shared. Go back to the app and try again.",
            f"{error.error}: {error.description or ''}".strip(": "),
        )
    launch: LaunchContext | None = getattr(grant.request, "smart_launch", None)
    actor: PatientUser | Clinician
    if launch is not None and launch.practitioner_id is not None:
        # A clinician's launch from a chart: only the clinician who launched may go on.
        if session.get(SESSION_CLINICIAN) != launch.practitioner_id:
            return error_page(
                403,
                "This launch was opened by another clinician",
                "Open the app again from the patient's chart in the launch simulator.",
            )
        owner = sdb.session.get(PatientUser, launch.user_id)
        assert owner is not None  # a foreign key
        actor = acting_user(owner, launch.practitioner_id)
    else:
        if user is None:
            return redirect(url_for(".login", next=request.full_path))
        if launch is not None and launch.user_id != user.id:
            return error_page(
                403,
                "This launch is for another patient",
                "You are signed in as someone else. Sign out, then open the app from the "
                "patient's record again.",
            )
        actor = user
    client: Client = grant.client
    items = consent_items(grant.request.scope.split())
    if request.method == "GET":
        return render_template(
            "sandbox/consent.html",
            client=client,
            patient_name=actor.record_owner.display_name,
            clinician=actor if isinstance(actor, Clinician) else None,
            items=items,
            automatic=[s for s in grant.request.scope.split() if s in LAUNCH_SCOPES],
        )

    if not csrf_ok():
        return csrf_refused()
    kept = {s for value in request.form.getlist("kept") for s in value.split()}
    if request.form.get("decision") != "allow" or (items and not kept):
        return srv.create_authorization_response(grant=grant, grant_user=None)
    grant.request.consented_scopes = kept
    grant.request.auth_time = session.get(SESSION_AUTH_TIME)
    return srv.create_authorization_response(grant=grant, grant_user=actor)


# Plain words for resource types (the part after "your").
RESOURCE_WORDS = {
    "*": "whole health record",
    "AllergyIntolerance": "allergies",
    "Appointment": "appointments",
    "Binary": "document files (letters, reports and scans)",
    "CarePlan": "care plans",
    "CareTeam": "care team",
    "Condition": "health problems (conditions)",
    "Coverage": "insurance coverage",
    "Device": "medical devices",
    "DiagnosticReport": "test and imaging reports",
    "DocumentReference": "documents and clinical notes",
    "Encounter": "visits",
    "ExplanationOfBenefit": "insurance claims",
    "Claim": "insurance claims",
    "FamilyMemberHistory": "family health history",
    "Goal": "health goals",
    "ImagingStudy": "imaging studies",
    "Immunization": "immunizations (vaccines)",
    "Location": "care locations",
    "Medication": "medicine details",
    "MedicationAdministration": "medicines given to you",
    "MedicationDispense": "medicines dispensed to you",
    "MedicationRequest": "medicines",
    "MedicationStatement": "medicines you take",
    "Observation": "observations (lab results, vital signs and more)",
    "Organization": "healthcare organizations",
    "Patient": "personal details (name, birth date, contact details)",
    "Practitioner": "clinicians",
    "PractitionerRole": "clinicians' roles",
    "Procedure": "procedures",
    "Provenance": "record history (who wrote what)",
    "QuestionnaireResponse": "questionnaire answers",
    "RelatedPerson": "related people",
    "ServiceRequest": "referrals and orders",
    "Specimen": "specimens",
}
CATEGORY_WORDS = {
    "laboratory": "lab results",
    "vital-signs": "vital signs",
    "social-history": "social history",
    "survey": "questionnaire answers",
    "imaging": "imaging results",
    "exam": "examination findings",
    "procedure": "procedure results",
    "therapy": "therapy results",
    "activity": "activity results",
    "sdoh": "social needs",
    "problem-list-item": "problem list",
    "health-concern": "health concerns",
    "encounter-diagnosis": "diagnoses from your visits",
    "clinical-note": "clinical notes",
}


def describe_scope(scope: str) -> str:
    """Plain words for one scope, as the consent page shows it."""
    if scope in IDENTITY_SCOPES:
        return "Know who you are"
    if scope == "offline_access":
        return "Stay connected when you are not using the app"
    if scope == "online_access":
        return "Stay connected while you are using the app"
    parsed = parse_scope(scope)
    if parsed is None:
        return scope
    words = RESOURCE_WORDS.get(parsed.resource_type) or _split_camel(parsed.resource_type)
    params = dict(parsed.params)
    if "category" in params:
        codes = [v.rsplit("|", 1)[-1] for v in params["category"].split(",")]
        named = [CATEGORY_WORDS.get(c, c.replace("-", " ")) for c in codes]
        words = " and ".join(named)
    elif params:
        words = f"some of your {words}"
    perms = parsed.permissions
    reads, writes = bool(perms & {"r", "s"}), perms & {"c", "u", "d"}
    if reads and writes:
        verb = "Read and change"
    elif writes == {"c"}:
        verb = "Add to"
    elif writes:
        verb = "Add to and change"
    else:
        verb = "Read"
    owner = "" if words.startswith("some of your") else "your "
    return f"{verb} {owner}{words}"


def _split_camel(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower() + " records"


def consent_items(scopes: list[str]) -> list[dict[str, Any]]:
    """One checkbox per distinct wording; launch scopes are kept without asking."""
    items: dict[str, list[str]] = {}
    for scope in scopes:
        if scope in LAUNCH_SCOPES:
            continue
        items.setdefault(describe_scope(scope), []).append(scope)
    order = {"Know who you are": 2, **{describe_scope(s): 3 for s in REFRESH_SCOPES}}
    return [
        {"label": label, "scopes": group, "value": " ".join(group)}
        for label, group in sorted(items.items(), key=lambda kv: order.get(kv[0], 1))
    ]


# --- login / logout ------------------------------------------------------------------------------


@bp.route(PATHS["login"], methods=["GET", "POST"])
def login():
    next_url = safe_next(request.values.get("next"))
    error = None
    status = 200
    if request.method == "POST":
        if not csrf_ok():
            return csrf_refused()
        user = accounts.authenticate(
            sdb.session, request.form.get("username", ""), request.form.get("password", "")
        )
        if user is not None:
            sign_in(user)
            return redirect(next_url or "/", code=303)
        error = "Wrong username or password."
        status = 401
    demo = accounts.demo_accounts(sdb.session) if current_app.config["DEMO"] else []
    page = render_template(
        "sandbox/login.html",
        next_url=next_url,
        error=error,
        demo_accounts=demo,
        user=current_user(),
        username=request.form.get("username", ""),
    )
    return page, status


@bp.post("/auth/logout")
def logout():
    if not csrf_ok():
        return csrf_refused()
    session.clear()
    return redirect(url_for(".login"), code=303)


# --- EHR launch simulator ------------------------------------------------------------------------


def _patients() -> list[dict[str, str]]:
    rows = sdb.session.scalars(
        sa.select(FhirResource).where(FhirResource.resource_type == "Patient")
    )
    patients = [
        {
            "id": row.resource_id,
            "name": accounts.patient_display_name(row.content),
            "birth_date": str(row.content.get("birthDate", "unknown")),
        }
        for row in rows
    ]
    return sorted(patients, key=lambda p: (p["name"], p["id"]))


def _encounters(patient_id: str) -> list[dict[str, str]]:
    rows = sdb.session.scalars(
        sa.select(FhirResource)
        .where(FhirResource.resource_type == "Encounter", FhirResource.patient_id == patient_id)
        .order_by(FhirResource.date_start.desc())
        .limit(200)
    )
    out = []
    for row in rows:
        types = row.content.get("type") or [{}]
        kind = types[0].get("text") or next(
            (c.get("display") for c in types[0].get("coding", []) if c.get("display")), "Visit"
        )
        when = row.date_start.date().isoformat() if row.date_start else "undated"
        out.append({"id": row.resource_id, "label": f"{when} · {kind}"})
    return out


def _launchable_apps() -> list[Client]:
    return list(
        sdb.session.scalars(
            sa.select(Client).where(Client.launch_url.is_not(None)).order_by(Client.name)
        )
    )


def _clinicians() -> list[dict[str, str]]:
    rows = sdb.session.scalars(
        sa.select(FhirResource).where(FhirResource.resource_type == "Practitioner").limit(500)
    )
    found = [
        {"id": row.resource_id, "name": person_name(row.content) or row.resource_id} for row in rows
    ]
    return sorted(found, key=lambda c: (c["name"], c["id"]))


@bp.route(PATHS["launch_simulator"], methods=["GET", "POST"])
def launch_simulator():
    """Play the EHR: open a registered app for a patient (and visit), as the EHR would.

    Two roles. The patient, from the EHR's patient portal: the patient signs in here first
    (as on a real patient portal), and the launch is for the patient signed in. A clinician,
    from the patient's chart: the launch is in the clinician's name (their Practitioner is
    the token's fhirUser), with the patient in context; the sandbox has no clinician logins,
    so launching makes this browser that clinician's EHR session.
    """
    if request.method == "POST":
        return _launch()
    apps = _launchable_apps()
    patients = _patients()
    app_id = request.args.get("app") or (apps[0].client_id if len(apps) == 1 else "")
    role = request.args.get("role") if request.args.get("role") in ROLES else "portal"
    patient_id = request.args.get("patient", "")
    chosen_app = next((a for a in apps if a.client_id == app_id), None)
    chosen_patient = next((p for p in patients if p["id"] == patient_id), None)
    user = current_user()
    return render_template(
        "sandbox/launch.html",
        apps=apps,
        roles=ROLES,
        role=role,
        patients=patients,
        clinicians=_clinicians() if role == "clinician" else [],
        chosen_app=chosen_app,
        chosen_patient=chosen_patient,
        signed_in=user,
        # The patient portal opens apps only for the patient signed in to it.
        needs_sign_in=role == "portal" and (user is None or user.patient_id != patient_id),
        sign_in_url=url_for(".login", next=request.full_path),
        encounters=_encounters(patient_id) if chosen_patient else [],
        default_style_url=default_style_url(),
    )


def _launch():
    if not csrf_ok():
        return csrf_refused()
    form = request.form
    client = sdb.session.get(Client, form.get("app", ""))
    if client is None or not client.launch_url:
        return error_page(400, "Unknown app", "Pick a registered app that has a launch URL.")
    role = form.get("role", "")
    if role not in ROLES:
        return error_page(400, "Unknown role", "Launch as the patient or as a clinician.")
    patient = sdb.session.scalar(
        sa.select(FhirResource).where(
            FhirResource.resource_type == "Patient",
            FhirResource.resource_id == form.get("patient", ""),
        )
    )
    if patient is None:
        return error_page(400, "Unknown patient", "Pick a patient of this EHR.")
    encounter_id = form.get("encounter") or None
    if encounter_id is not None:
        encounter = sdb.session.scalar(
            sa.select(FhirResource.resource_id).where(
                FhirResource.resource_type == "Encounter",
                FhirResource.resource_id == encounter_id,
                FhirResource.patient_id == patient.resource_id,
            )
        )
        if encounter is None:
            return error_page(400, "Unknown visit", "Pick one of this patient's visits.")
    style_url = (form.get("smart_style_url") or "").strip() or default_style_url()
    parts = urlsplit(style_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return error_page(400, "Invalid style URL", "The style URL must be an http(s) URL.")

    practitioner_id: str | None = None
    if role == "portal":
        user = current_user()
        if user is None or user.patient_id != patient.resource_id:
            return error_page(
                403,
                "Sign in as the patient first",
                "A patient portal opens apps only for the patient signed in to it. Sign in "
                "to this EHR with the patient's login, then launch again.",
            )
    else:
        practitioner_id = sdb.session.scalar(
            sa.select(FhirResource.resource_id).where(
                FhirResource.resource_type == "Practitioner",
                FhirResource.resource_id == form.get("clinician", ""),
            )
        )
        if practitioner_id is None:
            return error_page(400, "Unknown clinician", "Pick a clinician of this EHR.")
        user = accounts.user_for_patient(sdb.session, patient.content)  # the record's owner
    launch = LaunchContext(
        id=secrets.token_urlsafe(24),
        client_id=client.client_id,
        user_id=user.id,
        patient_id=patient.resource_id,
        encounter_id=encounter_id,
        need_patient_banner="need_patient_banner" in form,
        smart_style_url=style_url,
        practitioner_id=practitioner_id,
        expires_at=utcnow() + timedelta(seconds=int(current_app.config["LAUNCH_LIFETIME"])),
    )
    sdb.session.add(launch)
    sdb.session.flush()
    if practitioner_id is not None:
        work_as_clinician(practitioner_id)
    target = add_params_to_uri(client.launch_url, [("iss", fhir_base()), ("launch", launch.id)])
    return redirect(target, code=303)
