"""Sessions in real Chromium: the idle warning and "Stay signed in", the end of an idle session
(what was being typed kept), and an EHR launch that shows only that clinic until the patient's
password is given."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import Demo, running_demo, screenshot
from e2e.test_portal_launch import connect, settle, sign_in_at_ehr, sign_up, wait_for_sync

pytestmark = pytest.mark.e2e

IDLE = 14  # seconds, in a demo of its own; the warning shows for the last WARNING seconds
WARNING = 9


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """A demo whose sessions end after IDLE seconds without activity."""
    with running_demo(
        tmp_path_factory,
        "quick",
        SESSION_IDLE_TIMEOUT=str(IDLE),
        SESSION_IDLE_WARNING=str(WARNING),
        SESSION_TOUCH_INTERVAL="0",
    ) as demo:
        yield demo


def test_the_idle_warning_and_stay_signed_in(quick_demo: Demo, page: Page) -> None:
    sign_up(page, quick_demo, "idle@example.org")
    page.goto(f"{quick_demo.portal}/records/")
    warning = page.get_by_role("alertdialog", name="Still there?")
    expect(warning).to_be_visible(timeout=(IDLE - WARNING + 3) * 1000)
    expect(warning).to_contain_text("you will be signed out in about")
    screenshot(page, "session-idle-warning")
    page.get_by_role("button", name="Stay signed in").click()
    expect(warning).to_have_count(0)
    page.wait_for_timeout((IDLE - WARNING - 1) * 1000)  # past the first end, still signed in
    page.get_by_text("Parts of your record").click()  # the section menu, on a phone
    page.get_by_role("link", name="Allergies", exact=True).click()
    expect(page.get_by_role("heading", name="Allergies")).to_be_visible()


def test_an_idle_page_goes_to_sign_in_by_itself(quick_demo: Demo, page: Page) -> None:
    sign_up(page, quick_demo, "away@example.org")
    page.goto(f"{quick_demo.portal}/records/allergies")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=(IDLE + 5) * 1000)
    expect(page.get_by_role("status")).to_contain_text("not used for")
    assert "/signin" in page.url and "next=/records/allergies" in page.url
    screenshot(page, "session-ended-sign-in")
    page.get_by_label("Email").fill("away@example.org")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Allergies")).to_be_visible()


def test_what_was_typed_when_the_session_ended_is_kept(quick_demo: Demo, page: Page) -> None:
    sign_up(page, quick_demo, "typing@example.org")
    page.goto(f"{quick_demo.portal}/entries/new/allergy")
    page.get_by_label("Allergic or intolerant to").fill("Kiwi from the market")
    page.get_by_label("What happens (optional)").fill("Itchy mouth")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=(IDLE + 5) * 1000)
    expect(page.get_by_text("What you had typed is kept")).to_be_visible()
    page.get_by_label("Email").fill("typing@example.org")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Allergic or intolerant to")).to_have_value("Kiwi from the market")
    expect(page.get_by_label("What happens (optional)")).to_have_value("Itchy mouth")
    expect(page.get_by_text("We kept what you had typed")).to_be_visible()
    screenshot(page, "session-draft-restored")


def test_an_ehr_launch_shows_only_that_clinic_until_the_password(demo: Demo, page: Page) -> None:
    """Brant is known to both clinics and has a portal account with a password."""
    sign_up(page, demo, "brant.launch@example.org")
    connect(page, demo, "Riverside General Hospital", "brant")
    connect(page, demo, "Lakeside Family Clinic", "brant")
    wait_for_sync(page, demo)
    page.goto(f"{demo.portal}/records/care-team")
    expect(page.get_by_text("Lakeside Family Clinic").first).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    # A launch from Riverside's patient portal, in the same browser.
    page.goto(f"{demo.ehr}/launch")
    page.get_by_label("App").select_option("portal")
    page.get_by_label("Launched by").select_option(
        label="The patient, from the EHR's patient portal"
    )
    patients = page.get_by_label("Patient")
    brant = patients.locator("option", has_text="Brant Jacobson").first.get_attribute("value")
    patients.select_option(value=brant)
    page.get_by_role("button", name="Choose").click()
    if page.get_by_role("link", name="Sign in to the patient portal").count():
        page.get_by_role("link", name="Sign in to the patient portal").click()
        sign_in_at_ehr(page, "brant")
    page.get_by_role("button", name="Launch").click()
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_role("heading", name="Your health at a glance")).to_be_visible()
    settle(page)
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="See everything")).to_be_visible()
    expect(nav.get_by_role("link", name="My clinics")).to_have_count(0)
    page.goto(f"{demo.portal}/records/care-team")
    expect(page.get_by_text("Riverside General Hospital").first).to_be_visible()
    expect(page.get_by_text("Lakeside Family Clinic")).to_have_count(0)
    screenshot(page, "launch-session-one-clinic")
    page.goto(f"{demo.portal}/connect")  # the account's pages ask for the password
    expect(page.get_by_role("heading", name="See your whole record")).to_be_visible()
    screenshot(page, "launch-session-unlock")
    page.get_by_label("Your portal password").fill("not my password")
    page.get_by_role("button", name="Open my whole record").click()
    expect(page.get_by_text("That is not your portal password.")).to_be_visible()
    page.get_by_label("Your portal password").fill("correct horse battery")
    page.get_by_role("button", name="Open my whole record").click()
    expect(page.get_by_role("heading", name="Your clinics")).to_be_visible()
    page.goto(f"{demo.portal}/records/care-team")
    expect(page.get_by_text("Lakeside Family Clinic").first).to_be_visible()
    page.goto(f"{demo.portal}/account")  # both sessions of this browser's person are listed
    expect(page.get_by_role("heading", name="Where you are signed in")).to_be_visible()
    expect(page.get_by_text("This browser")).to_be_visible()
    screenshot(page, "account-sessions")
