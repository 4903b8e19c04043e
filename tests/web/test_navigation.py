"""Finding one's way on a phone: the summary's items link to their detail, the section menu,
the skip link, the favicon, the page-not-found page, and form attributes on every page."""

from __future__ import annotations

from collections import Counter
from urllib.parse import urldefrag, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape

from portal.extensions import db
from portal.phr import places
from portal.phr.access import open_record
from portal.phr.lists import immunizations, latest_immunizations
from portal.phr.records import Records
from portal.web.records import SECTIONS
from tests.conftest import REPO
from tests.phr import factories as f
from tests.phr.two_clinics import brant_at_both
from tests.sessions import begin
from tests.web.pages import element_ids, list_items, start_tags

# The summary's cards, by their heading's id, and the page each card's items open.
CARD_PAGES = {
    "h-allergies": "/records/allergies",
    "h-problems": "/records/problems",
    "h-meds": "/records/medications",
    "h-vitals": "/records/vitals/",
    "h-labs": "/records/labs/test/",
    "h-imm": "/records/immunizations",
    "h-social": "/records/social-history",
}


def sign_in(client: FlaskClient, account_id: int) -> None:
    with client.session_transaction() as s:
        begin(s, account_id)


def patient(app: Flask, client: FlaskClient, bundle: str) -> int:
    with app.app_context():
        account, _, _ = f.patient_with(db.session, bundle)
        db.session.commit()
        account_id = account.id
    sign_in(client, account_id)
    return account_id


def add_own_entries(client: FlaskClient) -> None:
    """A reading and a medicine of the patient's own (they show on the summary as "You")."""
    weight = {"value": "71.5", "unit": "kg", "when": "2026-03-04T08:30", "tz": "0"}
    assert client.post("/entries/new/weight", data=weight).status_code == 302
    medicine = {"name": "Vitamin D 1000 IU", "taking": "yes", "frequency": "once a day"}
    assert client.post("/entries/new/medication", data=medicine).status_code == 302


@pytest.mark.parametrize("bundle", ["christin_stiedemann", "vito_feeney"])
def test_every_summary_item_links_to_its_detail(
    app: Flask, client: FlaskClient, bundle: str
) -> None:
    patient(app, client, bundle)
    add_own_entries(client)
    summary = client.get("/records/")
    assert summary.status_code == 200
    items = [i for i in list_items(summary.text, "plain-list", "tiles") if i.card in CARD_PAGES]
    kinds = Counter(i.card for i in items)
    expected = set(CARD_PAGES) - ({"h-allergies"} if bundle == "vito_feeney" else set())
    assert set(kinds) == expected, kinds  # every kind of item is on this patient's summary
    pages: dict[str, str] = {}
    for item in items:
        assert item.links, f"{item.card}: {item.text.strip()!r} links nowhere"
        link = item.links[0]
        assert link.startswith(CARD_PAGES[item.card]), (item.card, link)
        url, anchor = urldefrag(link)
        if url not in pages:
            page = client.get(url)
            assert page.status_code == 200, link
            pages[url] = page.text
        if anchor:
            assert anchor in element_ids(pages[url]), f"{link}: no element with that id"
        name = item.link_texts[0].strip()
        assert name and str(escape(name)) in pages[url], (name, link)  # the detail is of it


@pytest.mark.parametrize("who", ["arron_schamberger", "brant_at_both_clinics"])
def test_an_immunization_is_linked_to_the_page_of_the_list_that_shows_it(
    app: Flask, who: str
) -> None:
    """Each dose once: a dose both clinics sent is one item, so pages count items, not rows."""
    with app.app_context():
        if who == "brant_at_both_clinics":
            account = brant_at_both(db.session).account
        else:
            account, _, _ = f.patient_with(db.session, who)  # ten vaccines
        records = Records(db.session, open_record(db.session, account.id))
        latest, _doses = latest_immunizations(records, 8)
        size = 3  # small pages, so the latest doses of some vaccines are on later ones
        pages = places.immunization_pages(records, latest, size=size)
        assert set(pages) == {i.id for i in latest} and max(pages.values()) > 1
        for item in latest:
            shown = immunizations(records, pages[item.id], size=size).items
            assert item.id in [i.id for i in shown], item.name


def test_section_menu_fits_a_phone_without_script(app: Flask, client: FlaskClient) -> None:
    patient(app, client, "vito_feeney")
    page = client.get("/records/labs").text
    tags = start_tags(page)
    names = [t for t, _a in tags]
    assert "details" in names and "summary" in names
    menu = page.split('<details class="records-menu">')[1].split("</details>")[0]
    assert "Parts of your record" in menu and "now showing </span>Lab results" in menu
    row = page.split('<ul class="records-tabs">')[1].split("</ul>")[0]
    for _endpoint, label, _section in SECTIONS:
        assert f">{label}</a>" in menu and f">{label}</a>" in row, label
    # The current page is marked in both, once each.
    assert menu.count('aria-current="page"') == 1 and row.count('aria-current="page"') == 1
    assert 'aria-current="page">Lab results</a>' in menu
    # A lab test's own page is under "Lab results".
    test_page = client.get("/records/labs/test/2339-0").text
    assert "now showing </span>Lab results" in test_page
    css = (REPO / "static" / "portal.css").read_text()
    assert ".records-tabs { display: none; }" in css  # a phone gets the menu, not the row
    assert "width: max-content" not in css  # no 1,400 px strip scrolled sideways


def test_skip_link_skips_the_section_navigation(app: Flask, client: FlaskClient) -> None:
    patient(app, client, "vito_feeney")
    for url in ["/records/", "/records/problems", "/records/vitals/weight"]:
        page = client.get(url).text
        tags = start_tags(page)
        skip = next(a for t, a in tags if t == "a" and a.get("class") == "skip-link")
        target = skip["href"].removeprefix("#")
        order = [a.get("id") or a.get("class", "") for _t, a in tags]
        nav = order.index("records-nav")
        content = order.index(target)
        assert content > nav, url  # the target comes after the section navigation
        assert page.index(f'id="{target}"') > page.index("</nav>", page.index("records-nav"))
        assert page.count(f'id="{target}"') == 1
    signin = app.test_client().get("/signin").text
    assert 'class="skip-link" href="#main"' in signin and 'id="main"' in signin


def test_favicon_is_served(client: FlaskClient) -> None:
    home = client.get("/").text
    icon = next(a for t, a in start_tags(home) if t == "link" and a.get("rel") == "icon")
    with client.get(icon["href"]) as answer:
        assert answer.status_code == 200 and answer.mimetype == "image/svg+xml"
        assert answer.text.startswith("<svg")
    with client.get("/favicon.ico") as old_style:  # asked for without reading the page
        assert old_style.status_code == 200 and old_style.mimetype == "image/svg+xml"
        assert old_style.text == (REPO / "static" / "favicon.svg").read_text()


@pytest.mark.parametrize("signed_in", [False, True])
def test_page_not_found_in_the_portals_words(
    app: Flask, client: FlaskClient, signed_in: bool
) -> None:
    urls = ["/no-such-page", "/static/nothing.css"]
    if signed_in:
        patient(app, client, "vito_feeney")
        urls += ["/records/labs/test/no-such-test", "/records/vitals/nonsense", "/entries/999999"]
    for url in urls:
        page = client.get(url)
        assert page.status_code == 404, url
        text = page.text
        assert "<title>Page not found · My Health Record</title>" in text
        assert "There is nothing at this address." in text
        assert "404" not in text and "Not Found" not in text and "requested URL" not in text
        if signed_in:
            assert '<a href="/records/">Go to your record</a>' in text
        else:
            assert '<a href="/">Back to the start page</a>' in text


# ---- every page ---------------------------------------------------------------------------

SKIP = ("/signout", "/static/", "/style/", "/connect/", "/launch", "/oauth/")
MISSING = "/no-such-page"
PER_ENDPOINT = 3  # pages with other parameters of one kind (lab tests, list pages) are alike


def crawl(client: FlaskClient, starts: list[str], app: Flask) -> dict[str, str]:
    """Every HTML page reachable by links from `starts` (GET only, this site only)."""
    seen: dict[str, str] = {}
    per_endpoint: Counter[str] = Counter()
    queue = list(starts)
    adapter = app.url_map.bind("localhost")
    while queue:
        url = urldefrag(queue.pop(0))[0]
        parts = urlsplit(url)
        if url in seen or parts.netloc or not url.startswith("/") or url.startswith(SKIP):
            continue
        if "/attachments/" in url:
            continue  # a download, not a page
        try:
            endpoint = adapter.match(parts.path)[0]
        except Exception:  # a link to a page that does not exist: 404 below
            endpoint = parts.path
        if per_endpoint[endpoint] >= PER_ENDPOINT:
            continue
        per_endpoint[endpoint] += 1
        answer = client.get(url)
        seen[url] = answer.text if answer.mimetype == "text/html" else ""
        missing = url == MISSING  # the page-not-found page is a page too
        assert answer.status_code == 404 if missing else answer.status_code in (200, 302), url
        if answer.status_code == 302:
            queue.append(answer.headers["Location"])
            continue
        queue += [a["href"] for t, a in start_tags(answer.text) if t == "a" and a.get("href")]
    return seen


def every_page(app: Flask, client: FlaskClient) -> dict[str, str]:
    outside = crawl(app.test_client(), ["/", "/signin", "/signup", "/reset", MISSING], app)
    patient(app, client, "christin_stiedemann")
    add_own_entries(client)
    inside = crawl(client, ["/records/", "/connect", "/account", "/entries/new"], app)
    return {**outside, **inside}


def test_no_page_says_autocomplete_none(app: Flask, client: FlaskClient) -> None:
    pages = every_page(app, client)
    paths = {urlsplit(u).path for u in pages}
    # The crawl reached every kind of page a patient opens.
    for endpoint in [e for e, _l, _s in SECTIONS]:
        assert app.url_map.bind("localhost").build(endpoint) in paths, endpoint
    for path in ("/signin", "/signup", "/reset", "/account", "/connect", "/entries/new"):
        assert path in paths
    assert any(p.startswith("/entries/new/") for p in paths)
    assert any(p.startswith("/entries/") and p[9:].isdigit() for p in paths)
    assert any(p.startswith("/records/labs/test/") for p in paths)
    assert any(p.startswith("/records/vitals/") for p in paths)
    inputs = 0
    for url, html in pages.items():
        for tag, attrs in start_tags(html):
            if tag in ("input", "select", "textarea", "form"):
                inputs += 1
                assert attrs.get("autocomplete", "off") not in ("None", ""), (url, tag, attrs)
    assert inputs > 50
    assert all('="None"' not in html for html in pages.values())


def test_entry_forms_list(app: Flask, client: FlaskClient) -> None:
    """The entry forms every page test above reaches: one per kind and per measure."""
    from portal.phr.entries.catalog import MEASURES
    from portal.web.entry_forms import KINDS

    patient(app, client, "vito_feeney")
    for key in [k.key for k in KINDS] + [m.key for m in MEASURES]:
        page = client.get(f"/entries/new/{key}")
        assert page.status_code == 200, key
        assert '="None"' not in page.text, key
