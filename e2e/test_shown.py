"""Units and time zone in real Chromium: the browser's zone is taken at sign-up/sign-in, the
account page changes both, and the records follow at once."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from e2e.conftest import PHONE, SCREENSHOTS, Demo, screenshot
from e2e.test_portal_launch import connect, sign_up, wait_for_sync

pytestmark = pytest.mark.e2e


@pytest.fixture
def chicago(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(
        viewport=PHONE, device_scale_factor=1, timezone_id="America/Chicago"
    )
    yield context
    context.close()


def test_the_browsers_zone_then_the_patients_choice(demo: Demo, chicago: BrowserContext) -> None:
    page: Page = chicago.new_page()
    sign_up(page, demo, "shown@example.org")  # the confirming form sends the browser's zone
    page.goto(f"{demo.portal}/account")
    expect(page.get_by_label("Time zone", exact=True)).to_have_value("America/Chicago")
    expect(page.get_by_role("radio", name=re.compile("^Metric"))).to_be_checked()
    page.get_by_role("radio", name=re.compile("^US")).check()
    page.get_by_role("button", name="Save units and time zone").click()
    expect(page.get_by_role("status")).to_contain_text("Saved: your record is shown")
    expect(page.get_by_role("radio", name=re.compile("^US"))).to_be_checked()
    page.get_by_role("heading", name="Units and time zone").scroll_into_view_if_needed()
    screenshot(page, "account-units-and-zone")

    connect(page, demo, "Riverside General Hospital", "brant")
    wait_for_sync(page, demo)
    page.goto(f"{demo.portal}/records/vitals")
    weight = page.locator("#vital-weight")
    expect(weight.locator(".latest-value")).to_contain_text(" lb")
    expect(page.locator("main")).not_to_contain_text("UTC")
    screenshot(page, "vitals-in-us-units")
    weight.screenshot(path=str(SCREENSHOTS / "vitals-weight-in-lb.png"))

    page.goto(f"{demo.portal}/account")
    page.get_by_role("radio", name=re.compile("^Metric")).check()
    page.get_by_role("button", name="Save units and time zone").click()
    page.goto(f"{demo.portal}/records/vitals")
    expect(page.locator("#vital-weight .latest-value")).to_contain_text(" kg")
