"""axe-core on every page a patient can reach, on a phone (390 px) and a desktop (1280 px):
any WCAG 2.2 AA violation fails the test, listing each page and rule.

axe-core comes from npm (package.json, installed by ./scripts/vendor into node_modules/) and is
added to the test's browser context as an init script: the portal never serves it, and the
CSP (script-src 'self') does not apply to what the test itself runs in the page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from playwright.sync_api import Error as PlaywrightError

from e2e.conftest import PHONE, REPO, SCREENSHOTS, Demo, mailed_link, screenshot
from e2e.test_portal_launch import (
    choose_in_simulator,
    connect,
    sign_in_at_ehr,
    sign_up,
    wait_for_sync,
)

pytestmark = pytest.mark.e2e

AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
DESKTOP = {"width": 1280, "height": 900}
WIDTHS = [("390px", PHONE), ("1280px", DESKTOP)]
# The portal's stylesheet applies (the skip link is moved off screen by it).
STYLED = "() => getComputedStyle(document.querySelector('.skip-link') || document.body).position"
STYLED += " === 'absolute' || !document.querySelector('.skip-link')"
# Null when the page was not styled when axe began or ended (a page watching a sync replaced
# itself in between): it is checked again, as the patient sees it.
STYLED_NOW = STYLED.replace("() => ", "")
RUN_AXE = (
    """async (tags) => {
  const styled = () => ("""
    + STYLED_NOW
    + """);
  if (!styled()) return null;
  const result = await axe.run(document, {
    runOnly: {type: 'tag', values: tags}, resultTypes: ['violations'],
  });
  if (!styled()) return null;
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 4).map(n => n.target.join(' ') + ' :: ' + (n.failureSummary || '')
      .replace(/\\s+/g, ' ').slice(0, 160)),
    count: v.nodes.length,
  }));
}"""
)


@dataclass
class Audit:
    """What axe found, page by page; checked once at the end so one run lists everything."""

    found: list[str] = field(default_factory=list)
    pages: int = 0

    def check(self, page: Page, where: str) -> None:
        for attempt in (1, 2):
            try:
                violations = self._run(page)
                break
            except PlaywrightError as error:
                # A page that watches a sync reloads itself when it ends: check the new one.
                if attempt == 2 or "context was destroyed" not in str(error):
                    raise
        self.pages += 1
        for v in violations:
            nodes = "\n      ".join(v["nodes"])
            self.found.append(
                f"{where}: {v['id']} ({v['impact']}, {v['count']}x) {v['help']}\n      {nodes}"
            )

    @staticmethod
    def _run(page: Page) -> list[dict[str, Any]]:
        for _ in range(5):
            page.wait_for_load_state("load")
            page.wait_for_function(STYLED)  # judged as the patient sees it, with the stylesheet
            menu = page.locator("details.records-menu")
            if menu.count() and menu.is_visible():
                menu.evaluate("d => { d.open = true }")  # its links are checked too
            found: list[dict[str, Any]] | None = page.evaluate(RUN_AXE, TAGS)
            if found is not None:
                return found
        raise AssertionError(f"{page.url} kept replacing itself while axe checked it")

    def assert_clean(self) -> None:
        assert not self.found, f"{len(self.found)} WCAG 2.2 AA violations:\n" + "\n".join(
            self.found
        )


@pytest.fixture
def axe_context(browser: Browser) -> Iterator[BrowserContext]:
    if not AXE.exists():
        pytest.fail(f"axe-core is missing ({AXE}): run ./scripts/vendor")
    context = browser.new_context(viewport=PHONE, device_scale_factor=1)
    context.add_init_script(path=str(AXE))
    yield context
    context.close()


def walk(page: Page, audit: Audit, urls: list[str]) -> None:
    """Each page at each width; the same browser page throughout (one browser, one context)."""
    for width, size in WIDTHS:
        page.set_viewport_size(size)
        for url in urls:
            answer = page.goto(url)
            assert answer is not None and answer.status in (200, 404), (url, answer.status)
            audit.check(page, f"[{width}] {url}")


def links(page: Page, selector: str) -> list[str]:
    hrefs: list[str] = page.locator(selector).evaluate_all(
        "els => els.map(a => a.getAttribute('href'))"
    )
    return [urljoin(page.url, h).split("#")[0] for h in hrefs if h]


def test_every_page_meets_wcag_22_aa(demo: Demo, axe_context: BrowserContext) -> None:
    audit = Audit()
    page = axe_context.new_page()
    p = demo.portal
    email = "axe-christin@example.org"

    # Signed out: the front page, sign-in, sign-up, reset, a page that is not there.
    walk(page, audit, [f"{p}/", f"{p}/signin", f"{p}/signup", f"{p}/reset", f"{p}/no-such-page"])
    page.goto(f"{p}/signup")
    page.get_by_role("button", name="Create account").click()  # nothing filled in: errors
    expect(page.locator(".field-error").first).to_be_visible()
    audit.check(page, "[390px] sign-up with errors")
    sign_up(page, demo, email)
    page.goto(mailed_link(demo, email, "/signup/confirm/"))  # used: says so
    audit.check(page, "[390px] sign-up link used")

    # Signed in, no clinic connected yet: the welcome, "My clinics" with none, the account.
    walk(page, audit, [f"{p}/records/", f"{p}/connect", f"{p}/account", f"{p}/entries/new"])

    # Signed in, with a clinic's record and entries of one's own.
    connect(page, demo, "Riverside General Hospital", "christin")
    wait_for_sync(page, demo)
    audit.check(page, "[390px] sync status")
    page.goto(f"{p}/entries/new/weight")
    page.get_by_role("button", name="Save").click()  # nothing filled in: errors
    expect(page.locator(".field-error").first).to_be_visible()
    audit.check(page, "[390px] reading with errors")
    page.get_by_label("Weight").fill("71.5")
    page.get_by_label("When").fill("2026-03-04T08:30")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Saved")
    page.goto(f"{p}/records/")
    records = links(page, ".records-tabs a")
    assert len(records) >= 15
    page.goto(f"{p}/records/labs")
    tests = links(page, "#lab-tests h2 a")[:1]
    page.goto(f"{p}/records/vitals")
    vitals = links(page, "#vitals h2 a")[:1]
    own = links(page, "a.mine-link, tr.reading.mine a")[:1]
    page.goto(f"{p}/entries/new")
    forms = links(page, "main a[href*='/entries/new/']")
    assert len(forms) >= 10 and tests and vitals and own
    entry = own[0]
    others = [f"{p}/connect", f"{p}/sync/status", f"{p}/account", f"{p}/no-such-page"]
    walk(page, audit, [*records, *tests, *vitals, f"{p}/entries/new", *forms, entry, *others])
    screenshot_phone(page, p)

    # The reset form a mailed link opens (signed out, in the same browser).
    page.set_viewport_size(PHONE)
    page.get_by_role("button", name="Sign out").click()
    page.goto(f"{p}/reset")
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name=re.compile("Send")).click()
    audit.check(page, "[390px] reset sent")
    walk(page, audit, [mailed_link(demo, email, "/reset/")])

    assert audit.pages > 2 * (len(records) + len(forms) + 12)
    audit.assert_clean()


def screenshot_phone(page: Page, p: str) -> None:
    """The summary and its section menu, opened, at 390 px; the row at 1280 (to look at)."""
    page.set_viewport_size(PHONE)
    page.goto(f"{p}/records/")
    screenshot(page, "summary-390")
    page.screenshot(path=str(SCREENSHOTS / "summary-390-screen.png"))  # what the phone shows
    page.locator("details.records-menu summary").click()
    expect(page.locator(".records-menu a").first).to_be_visible()
    screenshot(page, "summary-menu-open-390")
    page.screenshot(path=str(SCREENSHOTS / "summary-menu-open-390-screen.png"))
    page.set_viewport_size(DESKTOP)
    page.goto(f"{p}/records/labs")
    page.screenshot(path=str(SCREENSHOTS / "labs-1280-screen.png"))


def test_a_launch_session_meets_wcag_22_aa(demo: Demo, axe_context: BrowserContext) -> None:
    """The pages only an EHR launch shows: the summary while the record arrives, and the
    page that asks for the portal password to see everything."""
    audit = Audit()
    page = axe_context.new_page()
    choose_in_simulator(page, demo, "The patient, from the EHR's patient portal")
    page.get_by_role("link", name="Sign in to the patient portal").click()
    sign_in_at_ehr(page, "raeann")
    page.get_by_role("button", name="Launch").click()
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_role("heading", name="Your health at a glance")).to_be_visible()
    audit.check(page, "[390px] summary of a launch, while fetching")
    wait_for_sync(page, demo)
    walk(page, audit, [f"{demo.portal}/records/", f"{demo.portal}/account/unlock"])
    audit.assert_clean()
