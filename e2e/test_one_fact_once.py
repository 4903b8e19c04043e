"""One fact once, counted once, in real Chromium at phone size: Brant Jacobson, known to both
sandbox clinics, sees each visit once with "also reported by", counts that match the rows, and
can split a visit and take the split back from the same place."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import PHONE, Demo, screenshot
from e2e.test_portal_launch import connect, sign_up, wait_for_sync

pytestmark = pytest.mark.e2e

LAKESIDE = "Lakeside Family Clinic"


def printed(page: Page, noun: str) -> int:
    text = page.locator("main").get_by_text(re.compile(rf"^\d+ {noun}s?, newest first")).first
    return int(text.inner_text().split()[0])


def rows_on_every_page(page: Page, url: str, selector: str) -> int:
    page.goto(url)
    where = page.locator(".pager-where")
    pages = int(where.first.inner_text().split()[-1]) if where.count() else 1
    rows = 0
    for n in range(1, pages + 1):
        page.goto(f"{url}?page={n}")
        rows += page.locator(selector).count()
    return rows


def test_brant_at_both_clinics_sees_each_visit_once(demo: Demo, page: Page) -> None:
    assert page.viewport_size == PHONE
    sign_up(page, demo, "brant.once@example.org")
    connect(page, demo, "Riverside General Hospital", "brant")
    connect(page, demo, LAKESIDE, "brant")
    wait_for_sync(page, demo)

    visits = f"{demo.portal}/records/visits"
    page.goto(visits)
    assert printed(page, "visit") == 37
    first = page.locator("li.visit").first
    expect(first).to_contain_text(f"Also reported by {LAKESIDE}.")
    screenshot(page, "one-fact-visits")
    assert rows_on_every_page(page, visits, "li.visit") == 37
    for n in range(1, 5):
        page.goto(f"{visits}?page={n}")
        cards = page.locator("li.visit")
        expect(cards.filter(has_text=f"Also reported by {LAKESIDE}.")).to_have_count(cards.count())

    procedures = f"{demo.portal}/records/procedures"
    page.goto(procedures)
    assert printed(page, "procedure") == 12
    assert rows_on_every_page(page, procedures, "#procedures-list li.item") == 12

    shots = f"{demo.portal}/records/immunizations"
    page.goto(shots)
    count = printed(page, "immunization")
    assert rows_on_every_page(page, shots, "#immunizations-list tbody tr") == count

    page.goto(f"{demo.portal}/records/")
    labs = page.locator("section[aria-labelledby='h-labs'] li")
    egfr = labs.filter(has_text="Estimated Glomerular Filtration Rate").filter(
        has_text="118 mL/min/1.73 m²"
    )
    expect(egfr.filter(has_text="17 May 2020")).to_have_count(1)
    expect(egfr.first).to_contain_text(f"also {LAKESIDE}")
    expect(page.get_by_role("link", name=f"All {count} immunizations")).to_be_visible()
    screenshot(page, "one-fact-summary")

    page.goto(f"{demo.portal}/records/care-plans?show=all")
    expect(page.locator("li.item", has_text="Asthma self management")).to_have_count(1)
    page.goto(f"{demo.portal}/records/care-team")
    clinicians = page.locator(".contacts li", has_text="Clinician")
    names = [c.split("\n")[0] for c in clinicians.all_inner_texts()]
    assert names and len(names) == len(set(names))
    expect(clinicians.first).to_contain_text(f"Also reported by {LAKESIDE}.")
    screenshot(page, "one-fact-care-team")

    page.goto(f"{demo.portal}/records/vitals")
    for card in page.locator("article.vital").all():
        shown = re.search(r"Show all (\d+) readings", card.inner_text())
        if shown:
            card.get_by_role("link", name=re.compile("Show all")).click()
            rows = card.locator("tr.reading")
            expect(rows).to_have_count(int(shown.group(1)))


def test_a_split_visit_is_taken_back_from_the_same_place(demo: Demo, page: Page) -> None:
    sign_up(page, demo, "brant.split@example.org")
    connect(page, demo, "Riverside General Hospital", "brant")
    connect(page, demo, LAKESIDE, "brant")
    wait_for_sync(page, demo)
    page.goto(f"{demo.portal}/records/visits")
    page.locator("li.visit").first.get_by_role("link", name="Not the same?").click()
    expect(page.get_by_role("heading", name="Are these different?")).to_be_visible()
    page.get_by_role("button", name="Show them separately").click()
    assert printed(page, "visit") == 38
    apart = page.locator("li.visit", has_text="Shown separately, as you asked.")
    expect(apart).to_have_count(2)
    screenshot(page, "one-fact-split")
    apart.first.get_by_role("link", name="These are the same").click()
    expect(page.get_by_role("heading", name="Are these the same?")).to_be_visible()
    page.get_by_role("button", name="These are the same").click()
    expect(page.get_by_role("status")).to_contain_text("shown as one again")
    assert printed(page, "visit") == 37
    expect(page.locator("li.visit").first).to_contain_text(f"Also reported by {LAKESIDE}.")
    expect(page.get_by_text("Shown separately, as you asked.")).to_have_count(0)
    screenshot(page, "one-fact-joined")
