"""The patient's own readings in real Chromium, on a phone-sized screen: recorded, charted with
the clinic's values under a "You" badge, deleted and brought back."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import Demo, screenshot
from e2e.test_portal_launch import connect, sign_up, wait_for_sync

pytestmark = pytest.mark.e2e


def test_record_a_blood_pressure_and_see_it_next_to_the_clinics(demo: Demo, page: Page) -> None:
    sign_up(page, demo, "christin@example.org")
    connect(page, demo, "Riverside General Hospital", "christin")
    wait_for_sync(page, demo)
    page.goto(f"{demo.portal}/records/vitals")
    bp_card = page.locator("#vital-blood-pressure")
    expect(bp_card.locator(".source").first).to_have_text("Source: Riverside General Hospital")

    page.get_by_role("link", name="Add a reading").click()
    page.get_by_role("link", name="Blood pressure").click()
    # A typing mistake is explained and what was typed stays.
    page.get_by_label("Top number (systolic)").fill("1280")
    page.get_by_label("Bottom number (diastolic)").fill("84")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("enter a value between 40 and 300 mmHg")).to_be_visible()
    expect(page.get_by_label("Bottom number (diastolic)")).to_have_value("84")
    screenshot(page, "entry-blood-pressure-error")
    page.get_by_label("Top number (systolic)").fill("128")
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("status")).to_contain_text("Saved your blood pressure reading.")
    expect(bp_card.locator(".latest-value")).to_have_text("128/84 mmHg")
    mine = bp_card.locator("tr.reading.mine")
    expect(mine).to_have_count(1)
    expect(mine.locator(".source-you")).to_have_text("Source: You")
    expect(bp_card.locator("rect.point.mine")).to_have_count(2)  # top and bottom numbers
    expect(bp_card.get_by_text("Your own readings")).to_be_visible()
    expect(bp_card.locator("tr.reading:not(.mine) .source").first).to_contain_text("Riverside")
    bp_card.scroll_into_view_if_needed()
    screenshot(page, "vitals-with-own-blood-pressure")

    # Delete it, see it gone, undo.
    mine.get_by_role("link", name="Change").click()
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("You deleted this entry")).to_be_visible()
    page.goto(f"{demo.portal}/records/vitals")
    expect(page.locator("#vital-blood-pressure tr.reading.mine")).to_have_count(0)
    page.go_back()
    page.get_by_role("button", name="Undo delete").click()
    expect(page.get_by_role("status")).to_contain_text("Restored")
    screenshot(page, "entry-history")
    page.goto(f"{demo.portal}/records/vitals")
    expect(page.locator("#vital-blood-pressure tr.reading.mine")).to_have_count(1)

    # A medicine the clinic also lists: one row, "also reported by You".
    page.goto(f"{demo.portal}/records/medications")
    page.get_by_role("link", name="Add a medicine you take").click()
    page.get_by_label("Medicine").fill("Warfarin 5 mg tablet")
    page.get_by_label("Dose (optional)").fill("5 mg")
    page.get_by_label("How often").select_option("once a day")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Saved a medicine to your record.")
    warfarin = page.locator("li.item", has_text="Warfarin")
    expect(warfarin).to_have_count(1)
    expect(warfarin.locator(".source").first).to_contain_text("Riverside General Hospital")
    expect(warfarin.get_by_text("Also reported by You.")).to_be_visible()
    warfarin.scroll_into_view_if_needed()
    screenshot(page, "medications-merged-with-own")


def test_a_stale_tab_does_not_send_an_entry_twice(demo: Demo, page: Page) -> None:
    """An entry's page open in two tabs: the first sends it to the clinic; the second tab's
    button, pressed later, says the clinic has it and sends nothing more."""
    sign_up(page, demo, "twotabs@example.org")
    connect(page, demo, "Riverside General Hospital", "christin")
    wait_for_sync(page, demo)
    page.goto(f"{demo.portal}/entries/new/weight")
    page.get_by_label("Weight").fill("71")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Saved")
    page.goto(f"{demo.portal}/records/vitals")
    page.locator("#vital-weight tr.reading.mine").get_by_role("link", name="Change").click()
    entry = page.url.split("/edit")[0].rstrip("/")
    page.goto(entry)
    stale = page.context.new_page()
    stale.goto(entry)
    send = "Send to Riverside General Hospital"
    page.get_by_role("button", name=send).click()
    expect(page.get_by_role("status")).to_contain_text("Sending it to your clinic.")
    target = page.locator("li.target")
    for _ in range(60):  # the demo's worker sends it in the background
        if "sent." in (target.text_content() or ""):
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(target).to_contain_text("Riverside General Hospital: sent.")
    stale.get_by_role("button", name=send).click()
    expect(stale.get_by_role("status")).to_contain_text(
        "Riverside General Hospital already has it."
    )
    expect(stale.locator("li.target")).to_contain_text("sent.")
    expect(stale.get_by_role("button", name=send)).to_have_count(0)
    screenshot(stale, "entry-sent-from-a-stale-tab")
