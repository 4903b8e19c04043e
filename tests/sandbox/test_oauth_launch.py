"""The EHR launch simulator and launch context in token responses (EHR and standalone)."""

from __future__ import annotations

import secrets
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask import Flask

from portal.db import utcnow
from portal.sandbox.models import FhirResource, LaunchContext, PatientUser
from tests.sandbox.flows import (
    FHIR_BASE,
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


def simulator_form(http: httpx.Client, app: App, patient_id: str):
    page = http.get("/launch", params={"app": app.client_id, "patient": patient_id})
    assert page.status_code == 200
    return page, form_with(page.text, "encounter")


def launch(
    http: httpx.Client, app: App, patient_id: str, /, **choices: str | None
) -> httpx.Response:
    """Press Launch in the simulator; a None choice leaves the field out (unticked box)."""
    _, form = simulator_form(http, app, patient_id)
    data = form.data()
    data["need_patient_banner"] = "1"
    data.update(choices)
    return http.post("/launch", data={k: v for k, v in data.items() if v is not None})


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
    # The browser is now signed in to the EHR as that patient.
    user = session_rows(sandbox_app, sa.select(PatientUser).where(PatientUser.id == ctx.user_id))
    assert user[0].patient_id == patient_id
    assert "You are signed in as Christin Stiedemann" in http.get("/auth/login").text


def test_ehr_launch_token_carries_the_context(
    sandbox_app: Flask, loaded, http: httpx.Client, app: App
) -> None:
    patient_id = loaded["raeann_okon"].patient_id
    encounter = sorted(encounters_of(sandbox_app, patient_id))[-1]
    style = "https://style.test/ehr.json"
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
    refused = {
        "no csrf": {"csrf_token": None},
        "forged csrf": {"csrf_token": "forged"},
        "unknown app": {"app": "no-such-app"},
        "app without launch URL": {"app": no_launch_url.client_id},
        "unknown patient": {"patient": "no-such-patient"},
        "another patient's encounter": {"encounter": someone_elses},
        "style URL not http": {"smart_style_url": "javascript:alert(1)"},
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


def test_launch_signs_in_a_patient_without_a_login(sandbox_app: Flask, http: httpx.Client) -> None:
    """Launching never needs a prepared login: the EHR creates one and signs the patient in."""
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
        answer = launch(http, app, patient_id)
        assert answer.status_code == 303
        users = session_rows(
            sandbox_app, sa.select(PatientUser).where(PatientUser.patient_id == patient_id)
        )
        assert len(users) == 1 and users[0].demo_password
    finally:
        with db(sandbox_app) as session:
            session.execute(
                sa.update(PatientUser)
                .where(PatientUser.patient_id == "parked-" + patient_id[:50])
                .values(patient_id=patient_id)
            )
