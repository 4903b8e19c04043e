"""The portal in real Chromium against the sandbox EHRs: EHR launch, standalone connect of two
EHRs, a refused scope explained, and token expiry recovered by refresh."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import Demo, mailed_link, screenshot

pytestmark = pytest.mark.e2e

SYNC_TIMEOUT = 30_000  # ms: a background sync of the biggest demo patient takes a few seconds


def sign_in_at_ehr(page: Page, username: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"{username}-demo")
    page.get_by_role("button", name="Sign in", exact=True).click()


def settle(page: Page) -> None:
    """Let a summary that watches a sync reload itself when the sync ends (the reloaded page
    watches no more) before leaving it: leaving just then would race with that reload."""
    expect(page.locator("[hx-get*='watch=1']")).to_have_count(0, timeout=SYNC_TIMEOUT)


def wait_for_sync(page: Page, demo: Demo) -> None:
    """Watch the live progress page (it polls) until no clinic is still fetching."""
    settle(page)
    page.goto(f"{demo.portal}/sync/status")
    expect(page.locator("#sync-status")).to_be_visible()
    expect(page.locator("#sync-status")).not_to_contain_text("Fetching", timeout=SYNC_TIMEOUT)
    expect(page.locator("#sync-status")).not_to_contain_text("Waiting", timeout=SYNC_TIMEOUT)


def sign_up(page: Page, demo: Demo, email: str) -> None:
    page.goto(f"{demo.portal}/signup")
    page.get_by_label("Your name").fill("Brant Jacobson")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password (at least 10 characters)").fill("correct horse battery")
    page.get_by_label("Repeat the password").fill("correct horse battery")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your email to continue")).to_be_visible()
    page.goto(mailed_link(demo, email, "/signup/confirm/"))
    page.get_by_role("button", name="Create my account").click()
    expect(page.get_by_role("status")).to_contain_text("Your account is ready")


def connect(page: Page, demo: Demo, clinic: str, username: str, untick: str | None = None) -> None:
    settle(page)
    page.goto(f"{demo.portal}/connect")
    page.get_by_role("link", name=f"Connect {clinic}").click()
    sign_in_at_ehr(page, username)
    if untick:
        page.get_by_role("checkbox", name=re.compile(untick)).uncheck()
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_role("heading", name="Your health at a glance")).to_be_visible()


def choose_in_simulator(page: Page, demo: Demo, role: str) -> None:
    page.goto(f"{demo.ehr}/launch")
    page.get_by_label("App").select_option("portal")
    page.get_by_label("Launched by").select_option(label=role)
    page.get_by_label("Patient").select_option(label="Raeann O'Kon (born 1968-10-09)")
    page.get_by_role("button", name="Choose").click()


def test_ehr_launch_from_the_simulator_lands_on_the_summary(demo: Demo, page: Page) -> None:
    choose_in_simulator(page, demo, "The patient, from the EHR's patient portal")
    # As on a real patient portal, the patient signs in there first, with their own login.
    expect(page.get_by_role("heading", name="Sign in as Raeann O'Kon first")).to_be_visible()
    page.get_by_role("link", name="Sign in to the patient portal").click()
    sign_in_at_ehr(page, "raeann")
    expect(page.get_by_role("heading", name=re.compile("^Launch My Health Record"))).to_be_visible()
    page.get_by_label("Visit (optional)").select_option(index=1)  # launched from a visit
    page.get_by_role("button", name="Launch").click()
    # Signed in at the EHR already: the patient only confirms what to share.
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_role("heading", name="Your health at a glance")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Connected to Riverside General Hospital")
    wait_for_sync(page, demo)
    expect(page.locator("#sync-status")).to_contain_text("Up to date.")
    page.goto(f"{demo.portal}/records/")
    expect(page.get_by_text("Raeann O'Kon").first).to_be_visible()
    expect(page.get_by_text("Riverside General Hospital").first).to_be_visible()
    # What the clinic had open, from the fetched record, with the way to it.
    opened = page.get_by_role("region", name="What your clinic had open")
    expect(opened).to_contain_text("Riverside General Hospital opened your record from:")
    expect(opened.get_by_role("link", name=re.compile(r"^Your visit on \d"))).to_be_visible()
    screenshot(page, "portal-summary-ehr-launch")
    opened.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Visits")).to_be_visible()
    expect(page.locator(".visit:target")).to_be_in_viewport()  # that visit, not just the list
    screenshot(page, "portal-visit-the-clinic-had-open")


def test_a_clinicians_launch_is_told_the_portal_is_for_patients(demo: Demo, page: Page) -> None:
    choose_in_simulator(page, demo, "A clinician, from the patient's chart")
    page.get_by_role("button", name="Launch").click()  # in the first clinician's name
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_role("heading", name="This portal is for patients")).to_be_visible()
    expect(
        page.get_by_text(re.compile("cannot be opened from a clinician's sign-in"))
    ).to_be_visible()
    expect(page.get_by_text(re.compile(r"Reference: [A-Z]{4}-[A-Z]{4}"))).to_be_visible()
    screenshot(page, "portal-clinician-launch-refused")


def test_standalone_two_ehrs_merged_with_sources(demo: Demo, page: Page) -> None:
    sign_up(page, demo, "brant@example.org")
    connect(page, demo, "Riverside General Hospital", "brant")
    connect(page, demo, "Lakeside Family Clinic", "brant")
    wait_for_sync(page, demo)
    page.goto(f"{demo.portal}/records/allergies")
    expect(page.get_by_text("Riverside General Hospital").first).to_be_visible()
    expect(page.get_by_text("Lakeside Family Clinic").first).to_be_visible()
    screenshot(page, "portal-allergies-two-ehrs")
    page.goto(f"{demo.portal}/connect")
    screenshot(page, "portal-connections")


def test_refused_scope_is_explained(demo: Demo, page: Page) -> None:
    sign_up(page, demo, "marlin@example.org")
    page.goto(f"{demo.portal}/connect")
    page.get_by_role("link", name="Connect Lakeside Family Clinic").click()
    sign_in_at_ehr(page, "marlin")
    page.get_by_role("checkbox", name=re.compile("^Read your immunization", re.I)).uncheck()
    page.get_by_role("button", name="Allow").click()
    wait_for_sync(page, demo)
    page.goto(f"{demo.portal}/records/immunizations")
    expect(page.get_by_text(re.compile("did not share immunizations"))).to_be_visible()
    screenshot(page, "portal-immunizations-not-shared")


def test_token_expiry_mid_session_is_recovered_by_refresh(demo: Demo, page: Page) -> None:
    # Riverside now issues access tokens that expire after 2 seconds.
    httpx.post(
        f"{demo.ehr}/admin/faults", json={"token_lifetime": {"value": 2}}, auth=demo.ehr_admin
    ).raise_for_status()
    try:
        sign_up(page, demo, "vito@example.org")
        connect(page, demo, "Riverside General Hospital", "vito")
        wait_for_sync(page, demo)
        page.wait_for_timeout(2500)  # the access token has expired
        page.goto(f"{demo.portal}/connect")
        page.get_by_role("button", name="Update now").click()
        wait_for_sync(page, demo)
        expect(page.locator("#sync-status")).to_contain_text("Up to date.")
        expect(page.locator("#sync-status")).not_to_contain_text("reconnect")
    finally:
        httpx.delete(f"{demo.ehr}/admin/faults", auth=demo.ehr_admin).raise_for_status()
