"""The EHR launch simulator and launch context in token responses (EHR and standalone)."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet

from portal.db import utcnow
from portal.sandbox.models import FhirResource, LaunchContext, PatientUser, Token
from portal.sandbox.oauth import person_name
from tests.sandbox.conftest import BASE_URL
from tests.sandbox.flows import (
    FHIR_BASE,
    JWKS,
    LAB,
    LAUNCH_URL,
    TOKEN,
    App,
    Authorized,
    authorize,
    consent,
    db,
    exchange,
    form_with,
    forms,
    login,
    oauth_client,
    patient_login,
    query,
    register_app,
    session_rows,
)

EHR_SCOPE = f"launch openid fhirUser online_access patient/Patient.rs patient/Encounter.rs {LAB}"


@pytest.fixture
def app(sandbox_app: Flask) -> App:
    return register_app(sandbox_app, launch_url=LAUNCH_URL, name="Launchable Diary")


def encounters_of(sandbox_app: Flask, patient_id: str) -> set[str]:
    return set(
        session_rows(
            sandbox_app,
            sa.select(FhirResource.resource_id).where(
                FhirResource.resource_type == "Encounter", FhirResource.patient_id == patient_id
            ),
        )
    )


def simulator_form(http: httpx.Client, app: App, patient_id: str, role: str = "portal"):
    page = http.get("/launch", params={"app": app.client_id, "patient": patient_id, "role": role})
    assert page.status_code == 200
    return page, form_with(page.text, "encounter")


def launch(
    http: httpx.Client, app: App, patient_id: str, /, as_role: str = "portal", **choices: str | None
) -> httpx.Response:
    """Press Launch in the simulator; a None choice leaves the field out (unticked box).
    The patient portal role needs the browser signed in as the patient (`signed_in_as`)."""
    _, form = simulator_form(http, app, patient_id, as_role)
    data = form.data()
    data["need_patient_banner"] = "1"
    if as_role == "clinician":
        data["clinician"] = form.selects["clinician"][0]
    data.update(choices)
    return http.post("/launch", data={k: v for k, v in data.items() if v is not None})


def signed_in_as(sandbox_app: Flask, http: httpx.Client, patient_id: str) -> None:
    """The patient signs in at the EHR's patient portal with their own login."""
    answer = login(http, patient_login(sandbox_app, patient_id))
    assert answer.status_code == 303


def practitioners(sandbox_app: Flask) -> dict[str, dict]:
    return {
        row.resource_id: row.content
        for row in session_rows(
            sandbox_app, sa.select(FhirResource).where(FhirResource.resource_type == "Practitioner")
        )
    }


def test_simulator_lists_launchable_apps_and_patients(
    sandbox_app: Flask, loaded, http: httpx.Client, app: App
) -> None:
    hidden = register_app(sandbox_app, name="No Launch URL App")
    page = http.get("/launch")
    assert page.status_code == 200
    assert "Launchable Diary" in page.text
    assert "No Launch URL App" not in page.text and hidden.client_id not in page.text
    assert "Raeann O&#39;Kon (born 1968-10-09)" in page.text
    assert "Raeann O'Kon" not in page.text
    form = form_with(page.text, "patient")
    assert form.method == "get"
    patient_ids = {loaded[name].patient_id for name in loaded}
    assert patient_ids <= set(form.selects["patient"])


def test_simulator_offers_the_chosen_patients_encounters(
    sandbox_app: Flask, loaded, http: httpx.Client, app: App
) -> None:
    patient_id = loaded["christin_stiedemann"].patient_id
    signed_in_as(sandbox_app, http, patient_id)
    _, form = simulator_form(http, app, patient_id)
    offered = set(form.selects["encounter"]) - {""}
    assert offered == encounters_of(sandbox_app, patient_id)
    assert "" in form.selects["encounter"]  # no encounter is a choice
    assert form.method == "post"
    fields = dict(form.fields)
    assert fields["smart_style_url"] == "http://ehr.test/ehr-static/smart-style.json"
    assert ("need_patient_banner", "1", True) in form.checkboxes


def test_launch_creates_a_context_and_opens_the_app(
    sandbox_app: Flask, loaded, http: httpx.Client, app: App
) -> None:
    patient_id = loaded["christin_stiedemann"].patient_id
    encounter = sorted(encounters_of(sandbox_app, patient_id))[0]
    signed_in_as(sandbox_app, http, patient_id)
    answer = launch(http, app, patient_id, encounter=encounter, need_patient_banner=None)
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith(LAUNCH_URL + "?")
    params = query(location)
    assert params["iss"] == FHIR_BASE
    rows = session_rows(
        sandbox_app, sa.select(LaunchContext).where(LaunchContext.id == params["launch"])
    )
    assert len(rows) == 1
    ctx = rows[0]
    assert len(ctx.id) >= 22
    assert (ctx.client_id, ctx.patient_id, ctx.encounter_id) == (
        app.client_id,
        patient_id,
        encounter,
    )
    assert ctx.need_patient_banner is False
    lifetime = (ctx.expires_at - utcnow()).total_seconds()
    assert (
        sandbox_app.config["LAUNCH_LIFETIME"] - 5
        < lifetime
        <= sandbox_app.config["LAUNCH_LIFETIME"]
    )
    # The launch is for the patient signed in, who stays signed in.
    user = session_rows(sandbox_app, sa.select(PatientUser).where(PatientUser.id == ctx.user_id))
    assert user[0].patient_id == patient_id
    assert ctx.practitioner_id is None
    assert "You are signed in as Christin Stiedemann" in http.get("/auth/login").text


def test_ehr_launch_token_carries_the_context(
    sandbox_app: Flask, loaded, http: httpx.Client, app: App
) -> None:
    patient_id = loaded["raeann_okon"].patient_id
    encounter = sorted(encounters_of(sandbox_app, patient_id))[-1]
    style = "https://style.test/ehr.json"
    signed_in_as(sandbox_app, http, patient_id)
    opened = launch(
        http,
        app,
        patient_id,
        encounter=encounter,
        need_patient_banner=None,
        smart_style_url=style,
    )
    params = query(opened.headers["location"])
    # The app discovers the server from iss, then asks for the launch.
    conf = http.get(params["iss"] + "/.well-known/smart-configuration").json()
    client = oauth_client(sandbox_app, app)
    done = authorize(http, client, EHR_SCOPE, launch=params["launch"], aud=params["iss"])
    assert conf["token_endpoint"] == TOKEN
    token = exchange(client, done)
    assert token["patient"] == patient_id
    assert token["encounter"] == encounter
    assert token["need_patient_banner"] is False
    assert token["smart_style_url"] == style
    assert "launch" in token["scope"].split()
    assert token["refresh_token"]  # online_access
    refreshed = client.refresh_token(TOKEN, refresh_token=token["refresh_token"])
    for name in ("patient", "encounter", "need_patient_banner", "smart_style_url"):
        assert refreshed[name] == token[name]


def test_ehr_launch_without_encounter(
    sandbox_app: Flask, loaded, http: httpx.Client, app: App
) -> None:
    patient_id = loaded["arron_schamberger"].patient_id
    signed_in_as(sandbox_app, http, patient_id)
    opened = launch(http, app, patient_id)
    client = oauth_client(sandbox_app, app)
    launch_id = query(opened.headers["location"])["launch"]
    token = exchange(client, authorize(http, client, EHR_SCOPE, launch=launch_id))
    assert token["patient"] == patient_id
    assert "encounter" not in token
    assert token["need_patient_banner"] is True


def test_standalone_launch_patient_is_the_signed_in_patient(
    sandbox_app: Flask, loaded, http: httpx.Client, app: App
) -> None:
    who = patient_login(sandbox_app, loaded["christin_stiedemann"].patient_id)
    login(http, who)
    client = oauth_client(sandbox_app, app)
    token = exchange(client, authorize(http, client, f"launch/patient openid fhirUser {LAB}"))
    assert token["patient"] == who.patient_id
    assert "encounter" not in token
    assert token["need_patient_banner"] is True
    # Without a launch scope the response names no patient (the token is still bound to it).
    token = exchange(client, authorize(http, client, f"openid fhirUser {LAB}"))
    assert "patient" not in token


def test_launch_by_another_app_cannot_be_used(
    sandbox_app: Flask, loaded, http: httpx.Client, app: App
) -> None:
    signed_in_as(sandbox_app, http, loaded["raeann_okon"].patient_id)
    opened = launch(http, app, loaded["raeann_okon"].patient_id)
    launch_id = query(opened.headers["location"])["launch"]
    other = register_app(sandbox_app, launch_url=LAUNCH_URL)
    client = oauth_client(sandbox_app, other)
    verifier = secrets.token_urlsafe(48)
    url, _ = client.create_authorization_url(
        FHIR_BASE.replace("/fhir", "/auth/authorize"),
        code_verifier=verifier,
        scope=EHR_SCOPE,
        aud=FHIR_BASE,
        launch=launch_id,
    )
    answer = http.get(url)
    assert answer.status_code == 302
    assert query(answer.headers["location"])["error"] == "invalid_request"
    assert create_s256_code_challenge(verifier) in url


def test_expired_launch_cannot_be_used(
    sandbox_app: Flask, loaded, http: httpx.Client, app: App
) -> None:
    signed_in_as(sandbox_app, http, loaded["raeann_okon"].patient_id)
    opened = launch(http, app, loaded["raeann_okon"].patient_id)
    launch_id = query(opened.headers["location"])["launch"]
    with db(sandbox_app) as session:
        session.execute(
            sa.update(LaunchContext)
            .where(LaunchContext.id == launch_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    client = oauth_client(sandbox_app, app)
    url, _ = client.create_authorization_url(
        FHIR_BASE.replace("/fhir", "/auth/authorize"),
        code_verifier=secrets.token_urlsafe(48),
        scope=EHR_SCOPE,
        aud=FHIR_BASE,
        launch=launch_id,
    )
    answer = http.get(url)
    assert query(answer.headers["location"])["error"] == "invalid_request"


def test_launch_form_is_checked(sandbox_app: Flask, loaded, http: httpx.Client, app: App) -> None:
    patient_id = loaded["raeann_okon"].patient_id
    someone_elses = sorted(encounters_of(sandbox_app, loaded["arron_schamberger"].patient_id))[0]
    no_launch_url = register_app(sandbox_app)
    signed_in_as(sandbox_app, http, patient_id)
    refused = {
        "no csrf": {"csrf_token": None},
        "forged csrf": {"csrf_token": "forged"},
        "unknown app": {"app": "no-such-app"},
        "app without launch URL": {"app": no_launch_url.client_id},
        "unknown patient": {"patient": "no-such-patient"},
        "another patient's encounter": {"encounter": someone_elses},
        "style URL not http": {"smart_style_url": "javascript:alert(1)"},
        "unknown role": {"role": "nurse"},
        "unknown clinician": {"role": "clinician", "clinician": "no-such-clinician"},
        "a clinician's launch without a clinician": {"role": "clinician"},
    }
    count = sa.select(sa.func.count()).select_from(LaunchContext)
    before = session_rows(sandbox_app, count)
    for case, choices in refused.items():
        answer = launch(http, app, patient_id, **choices)
        assert answer.status_code == 400, case
        assert "location" not in answer.headers, case
    assert session_rows(sandbox_app, count) == before


def test_consent_after_launch_names_the_app_and_patient(
    sandbox_app: Flask, loaded, http: httpx.Client, app: App
) -> None:
    signed_in_as(sandbox_app, http, loaded["raeann_okon"].patient_id)
    opened = launch(http, app, loaded["raeann_okon"].patient_id)
    launch_id = query(opened.headers["location"])["launch"]
    client = oauth_client(sandbox_app, app)
    verifier = secrets.token_urlsafe(48)
    url, state = client.create_authorization_url(
        FHIR_BASE.replace("/fhir", "/auth/authorize"),
        code_verifier=verifier,
        scope=EHR_SCOPE,
        aud=FHIR_BASE,
        launch=launch_id,
    )
    page = http.get(url)
    assert "Launchable Diary" in page.text
    assert "Raeann O&#39;Kon" in page.text
    assert "Stay connected while you are using the app" in page.text
    answer = consent(http, url)
    token = exchange(client, Authorized(answer.headers["location"], state, verifier))
    assert token["patient"] == loaded["raeann_okon"].patient_id


def test_launch_then_signed_in_as_someone_else(
    sandbox_app: Flask, loaded, http: httpx.Client, app: App
) -> None:
    signed_in_as(sandbox_app, http, loaded["raeann_okon"].patient_id)
    opened = launch(http, app, loaded["raeann_okon"].patient_id)
    launch_id = query(opened.headers["location"])["launch"]
    login(http, patient_login(sandbox_app, loaded["arron_schamberger"].patient_id))
    client = oauth_client(sandbox_app, app)
    url, _ = client.create_authorization_url(
        FHIR_BASE.replace("/fhir", "/auth/authorize"),
        code_verifier=secrets.token_urlsafe(48),
        scope=EHR_SCOPE,
        aud=FHIR_BASE,
        launch=launch_id,
    )
    answer = http.get(url)
    assert answer.status_code == 403
    assert "location" not in answer.headers


def test_the_patient_portal_role_needs_the_patients_own_sign_in(
    sandbox_app: Flask, loaded, http: httpx.Client, app: App
) -> None:
    """As on a real patient portal: nobody can launch an app as a patient they did not sign
    in as, so the launch (and the app's sign-in) is always the patient's own."""
    patient_id = loaded["raeann_okon"].patient_id
    count = sa.select(sa.func.count()).select_from(LaunchContext)
    before = session_rows(sandbox_app, count)
    page, _ = simulator_form_or_none(http, app, patient_id)
    assert "Sign in as Raeann O&#39;Kon first" in page.text
    sign_in = form_link(page.text, "Sign in to the patient portal")
    assert sign_in.startswith("/auth/login?next=")
    # Pressing Launch anyway (a forged or stale form) is refused and signs nobody in.
    forged = {"app": app.client_id, "patient": patient_id, "role": "portal"}
    csrf = form_with(http.get("/auth/login").text, "csrf_token").data()["csrf_token"]
    refused = http.post("/launch", data={**forged, "csrf_token": csrf})
    assert refused.status_code == 403 and "location" not in refused.headers
    assert "You are signed in as" not in http.get("/auth/login").text
    # Signed in as someone else, it is refused too.
    signed_in_as(sandbox_app, http, loaded["arron_schamberger"].patient_id)
    page, _ = simulator_form_or_none(http, app, patient_id)
    assert "Sign in as Raeann O&#39;Kon first" in page.text
    csrf = form_with(http.get("/auth/login").text, "csrf_token").data()["csrf_token"]
    assert http.post("/launch", data={**forged, "csrf_token": csrf}).status_code == 403
    assert session_rows(sandbox_app, count) == before
    # The patient signs in through the link and comes back to the simulator to launch.
    who = patient_login(sandbox_app, patient_id)
    back = login(http, who, query(sign_in)["next"])
    assert back.headers["location"].startswith("/launch?")
    assert launch(http, app, patient_id).status_code == 303


def simulator_form_or_none(http: httpx.Client, app: App, patient_id: str):
    page = http.get("/launch", params={"app": app.client_id, "patient": patient_id})
    assert page.status_code == 200
    found = [f for f in forms(page.text) if f.method == "post"]
    return page, found[0] if found else None


def form_link(html: str, text: str) -> str:
    found = re.search(r'<a href="([^"]+)">' + re.escape(text) + "</a>", html)
    assert found, html
    return found.group(1).replace("&amp;", "&")


def test_a_clinicians_launch_is_in_the_clinicians_name(
    sandbox_app: Flask, loaded, http: httpx.Client, app: App
) -> None:
    patient_id = loaded["christin_stiedemann"].patient_id
    _, form = simulator_form(http, app, patient_id, role="clinician")
    clinicians = practitioners(sandbox_app)
    assert set(form.selects["clinician"]) == set(clinicians)
    clinician = sorted(clinicians)[0]
    opened = launch(http, app, patient_id, as_role="clinician", clinician=clinician)
    assert opened.status_code == 303
    launch_id = query(opened.headers["location"])["launch"]
    (ctx,) = session_rows(
        sandbox_app, sa.select(LaunchContext).where(LaunchContext.id == launch_id)
    )
    assert ctx.practitioner_id == clinician and ctx.patient_id == patient_id
    # Nobody is signed in as the patient: the browser is the clinician's EHR session.
    assert "You are signed in as" not in http.get("/auth/login").text
    client = oauth_client(sandbox_app, app)
    verifier = secrets.token_urlsafe(48)
    url, state = client.create_authorization_url(
        FHIR_BASE.replace("/fhir", "/auth/authorize"),
        code_verifier=verifier,
        scope=EHR_SCOPE + " profile",
        aud=FHIR_BASE,
        launch=launch_id,
        nonce="clinician-nonce",
    )
    consent_page = http.get(url)
    name = person_name(clinicians[clinician])
    assert "(clinician)" in consent_page.text and name in consent_page.text
    answer = consent(http, url)
    token = exchange(client, Authorized(answer.headers["location"], state, verifier))
    assert token["patient"] == patient_id  # the chart that was open
    claims = jwt.decode(token["id_token"], KeySet.import_key_set(http.get(JWKS).json())).claims
    assert claims["fhirUser"] == f"{FHIR_BASE}/Practitioner/{clinician}"
    assert claims["sub"] == f"practitioner-{clinician}" and claims["name"] == name
    # The token reads the patient's record, and keeps the clinician when refreshed.
    record = http.get(
        f"{FHIR_BASE}/Patient/{patient_id}",
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert record.status_code == 200
    refreshed = client.refresh_token(TOKEN, refresh_token=token["refresh_token"])
    rows = session_rows(sandbox_app, sa.select(Token).order_by(Token.id.desc()).limit(2))
    assert {row.practitioner_id for row in rows} == {clinician}
    assert refreshed["patient"] == patient_id


def test_a_clinicians_launch_is_only_for_the_clinicians_browser(
    sandbox_app: Flask, loaded, http: httpx.Client, app: App
) -> None:
    patient_id = loaded["raeann_okon"].patient_id
    opened = launch(http, app, patient_id, as_role="clinician")
    launch_id = query(opened.headers["location"])["launch"]
    client = oauth_client(sandbox_app, app)
    url, _ = client.create_authorization_url(
        FHIR_BASE.replace("/fhir", "/auth/authorize"),
        code_verifier=secrets.token_urlsafe(48),
        scope=EHR_SCOPE,
        aud=FHIR_BASE,
        launch=launch_id,
    )
    with httpx.Client(transport=httpx.WSGITransport(app=sandbox_app), base_url=BASE_URL) as other:
        signed_in_as(sandbox_app, other, patient_id)  # even the patient cannot take it over
        answer = other.get(url)
    assert answer.status_code == 403
    assert "another clinician" in answer.text and "location" not in answer.headers
    assert http.get(url).status_code == 200  # the clinician's own browser goes on


def test_a_clinician_can_open_the_chart_of_a_patient_without_a_login(
    sandbox_app: Flask, http: httpx.Client
) -> None:
    """The EHR makes the record owner's login; it signs nobody in as the patient."""
    app = register_app(sandbox_app, launch_url=LAUNCH_URL)
    with db(sandbox_app) as session:
        row = session.scalar(
            sa.select(FhirResource).where(FhirResource.resource_type == "Patient").limit(1)
        )
        assert row is not None
        patient_id = row.resource_id
        # Simulate a patient nobody has signed in as yet (the users are put back afterwards).
        session.execute(
            sa.update(PatientUser)
            .where(PatientUser.patient_id == patient_id)
            .values(patient_id="parked-" + patient_id[:50])
        )
    try:
        answer = launch(http, app, patient_id, as_role="clinician")
        assert answer.status_code == 303
        users = session_rows(
            sandbox_app, sa.select(PatientUser).where(PatientUser.patient_id == patient_id)
        )
        assert len(users) == 1 and users[0].demo_password
        assert "You are signed in as" not in http.get("/auth/login").text
    finally:
        with db(sandbox_app) as session:
            session.execute(
                sa.update(PatientUser)
                .where(PatientUser.patient_id == "parked-" + patient_id[:50])
                .values(patient_id=patient_id)
            )
