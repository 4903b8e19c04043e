"""The sandbox EHR in real Chromium: patient sign-in, consent, code; the EHR launch simulator."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from playwright.sync_api import Page, Route, expect

from e2e.conftest import E2E_CLIENT_ID, E2E_LAUNCH, E2E_REDIRECT, Demo, screenshot

pytestmark = pytest.mark.e2e

SCOPE = "openid fhirUser launch/patient offline_access patient/*.rs"


def capture(page: Page, prefix: str) -> list[str]:
    """Intercept navigations to `prefix` (an app URL nobody serves) and record them."""
    seen: list[str] = []

    def handle(route: Route) -> None:
        seen.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<h1>App reached</h1>")

    page.route(re.compile(re.escape(prefix) + r".*"), handle)
    return seen


def test_demo_patient_signs_in_consents_and_the_app_gets_a_code(demo: Demo, page: Page) -> None:
    verifier = generate_token(64)
    with OAuth2Client(
        E2E_CLIENT_ID, redirect_uri=E2E_REDIRECT, scope=SCOPE, code_challenge_method="S256"
    ) as client:
        url, state = client.create_authorization_url(
            f"{demo.ehr}/auth/authorize", code_verifier=verifier, aud=demo.fhir
        )
        callbacks = capture(page, E2E_REDIRECT)

        page.goto(url)
        expect(page.get_by_role("heading", name="Sign in to your patient portal")).to_be_visible()
        # Demo accounts are listed, names escaped but readable (O'Kon has an apostrophe).
        expect(page.get_by_role("row", name=re.compile("^Raeann O'Kon"))).to_be_visible()
        screenshot(page, "sandbox-login")
        page.get_by_label("Username").fill("raeann")
        page.get_by_label("Password").fill("raeann-demo")
        page.get_by_role("button", name="Sign in", exact=True).click()

        expect(page.get_by_role("heading", name=re.compile("Allow E2E test app"))).to_be_visible()
        expect(page.get_by_text("Raeann O'Kon").first).to_be_visible()
        boxes = page.get_by_role("checkbox")
        assert boxes.count() >= 2
        screenshot(page, "sandbox-consent")
        page.get_by_role("button", name="Allow").click()
        expect(page.get_by_role("heading", name="App reached")).to_be_visible()

        assert len(callbacks) == 1
        params = parse_qs(urlsplit(callbacks[0]).query)
        assert params["state"] == [state]
        token = client.fetch_token(
            f"{demo.ehr}/auth/token", code=params["code"][0], code_verifier=verifier
        )
    assert token["token_type"].lower() == "bearer"
    assert "patient/*.rs" in token["scope"].split()
    assert token["refresh_token"]
    patient = httpx.get(
        f"{demo.fhir}/Patient/{token['patient']}",
        headers={"Authorization": f"Bearer {token['access_token']}"},
    ).json()
    assert patient["name"][0]["family"] == "O'Kon"


def test_wrong_password_keeps_the_patient_on_the_sign_in_page(demo: Demo, page: Page) -> None:
    page.goto(f"{demo.ehr}/auth/login")
    page.get_by_label("Username").fill("raeann")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_label("Username")).to_have_value("raeann")


def test_launch_simulator_opens_the_app_with_iss_and_launch(demo: Demo, page: Page) -> None:
    launches = capture(page, E2E_LAUNCH)
    page.goto(f"{demo.ehr}/launch")
    expect(page.get_by_role("heading", name="EHR launch simulator")).to_be_visible()
    page.get_by_label("App").select_option(E2E_CLIENT_ID)
    page.get_by_label("Patient").select_option(label="Raeann O'Kon (born 1968-10-09)")
    page.get_by_role("button", name="Choose").click()
    # From the patient portal: the patient signs in first, then comes back to launch.
    page.get_by_role("link", name="Sign in to the patient portal").click()
    page.get_by_label("Username").fill("raeann")
    page.get_by_label("Password").fill("raeann-demo")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile("Launch E2E test app"))).to_be_visible()
    screenshot(page, "sandbox-launch-simulator")
    page.get_by_role("button", name="Launch").click()
    expect(page.get_by_role("heading", name="App reached")).to_be_visible()

    params = parse_qs(urlsplit(launches[0]).query)
    assert params["iss"] == [demo.fhir]
    assert params["launch"][0]


def test_both_sandbox_instances_serve_their_own_patients(demo: Demo) -> None:
    for base in (demo.ehr, demo.ehr2):
        config = httpx.get(f"{base}/fhir/.well-known/smart-configuration").json()
        assert config["issuer"] == f"{base}/fhir"
        assert "S256" in config["code_challenge_methods_supported"]
    riverside = httpx.get(f"{demo.ehr}/auth/login").text
    lakeside = httpx.get(f"{demo.ehr2}/auth/login").text
    assert "Raeann O&#39;Kon" in riverside and "Raeann" not in lakeside
    assert "Marlin Kuphal" in lakeside and "Marlin" not in riverside


def test_portal_front_page_lists_both_ehrs(demo: Demo, page: Page) -> None:
    page.goto(demo.portal)
    expect(page.get_by_text("Riverside General Hospital").first).to_be_visible()
    expect(page.get_by_text("Lakeside Family Clinic").first).to_be_visible()
    screenshot(page, "portal-home")
