"""Every shared Synthea bundle, imported into a patient: every resource the sync stores is on
some records page, and no page shows a raw code (a code system token, a URL, a bare code
outside a "Details" element), a name in capitals, or a month in lower case.

The bundles live outside the repository (PORTAL_SHARED_FHIR, else ../shared/fhir/synthea).
Without them the module is skipped locally and fails on CI, where they must be present.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.app import create_app
from portal.extensions import db
from portal.phr import labs, vitals
from portal.phr.classify import classify
from portal.phr.names import category_text, is_shouted, medicine_name, plain_case
from portal.phr.records import tidy_person
from portal.phr.words import concept_text, date_text, lab_name, person_name, tidy, value_text
from portal.sync.plan import REFERENCED_TYPES, plan
from portal.web.framing import forget_policy
from tests.conftest import app_config, close_emptied
from tests.phr import factories as f
from tests.sessions import begin

pytestmark = pytest.mark.shared_data

SHARED = Path(os.environ.get("PORTAL_SHARED_FHIR") or f.REPO.parent / "shared" / "fhir" / "synthea")
MISSING = "<shared bundles missing>"
FILES = sorted(p.name for p in SHARED.glob("*_*.json")) or [MISSING]

# Which records page shows which type (the first page of each; the crawl follows its pages).
SHOWN_ON = {
    "Patient": "/records/",  # the banner
    "Condition": "/records/problems?show=all",
    "MedicationRequest": "/records/medications?show=all",
    "Medication": "/records/medications?show=all",  # the name of what was prescribed
    "AllergyIntolerance": "/records/allergies",
    "Immunization": "/records/immunizations",
    "Observation": "/records/labs",  # or vitals, social history, questionnaires: by category
    "DiagnosticReport": "/records/labs/panels",  # with results; documents when sent as one
    "DocumentReference": "/records/documents",
    "Encounter": "/records/visits",
    "Procedure": "/records/procedures",
    "ImagingStudy": "/records/imaging",
    "CarePlan": "/records/care-plans?show=all",
    "Goal": "/records/care-plans?show=all",
    "CareTeam": "/records/care-team",
    "Organization": "/records/care-team",  # the clinics to call
    "Practitioner": "/records/care-team",
    "Coverage": "/records/coverage",
    "Claim": "/records/bills",
    "ExplanationOfBenefit": "/records/bills",
}
OBSERVATION_PAGES = {
    "labs": "/records/labs",
    "observations": "/records/labs",
    "vitals": "/records/vitals",
    "social": "/records/social-history",
    "surveys": "/records/questionnaires",
}
START = sorted(set(SHOWN_ON.values()) | set(OBSERVATION_PAGES.values()))
FOLLOW = re.compile(r'href="(/records/[^"#]*)"')
LIST_PAGE = re.compile(r"[?&]page=\d+")
# What no page may show outside a "Details" element.
RAW = re.compile(
    r"\b(?:clinical-note|vital-signs?|laboratory|social-history|encounter-diagnosis"
    r"|problem-list-item|health-concern)\b|https?://|urn:(?:oid|uuid):"
    r"|\b\d{6,}\b|\((?:disorder|finding|procedure|situation)\)"
    r"|\[(?:Mass|Moles|Volume|Presence|#)[^\]]*\]"
)
LOWER_MONTH = re.compile(r"\b\d{1,2} (?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)\b")


class Site:
    """The pages of one record: the section pages and every page of their lists, crawled;
    any other page (a test's history) fetched when a check asks for it. By path without its
    query (the pages of a list together): their words, and their items (li, tr, article)."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.text: dict[str, str] = {}
        self.items: dict[str, list[str]] = {}
        self.links: list[str] = []
        fetched: set[str] = set()
        queue = list(START)
        while queue:
            path = queue.pop(0)
            if path in fetched:
                continue
            fetched.add(path)
            for link in self._fetch(path):
                if link not in fetched and LIST_PAGE.search(link):
                    queue.append(link)
        # A page of each kind that no list check may need, so that its words are read too.
        for kind in ("/records/labs/test/", "/records/vitals/"):
            for link in [x for x in dict.fromkeys(self.links) if x.startswith(kind)][:1]:
                self.visit(link)

    def _fetch(self, path: str) -> list[str]:
        response = self.client.get(path)
        assert response.status_code == 200, path
        base = _base(path)
        main = _main(response.text)
        self.text[base] = self.text.get(base, "") + " " + _words(main)
        parts = re.split(r"<(?:li|tr|article)\b", main)
        self.items.setdefault(base, []).extend(_words(part) for part in parts)
        links = [html.unescape(x) for x in FOLLOW.findall(response.text)]
        self.links += links
        return links

    def visit(self, path: str) -> None:
        if _base(path) not in self.text:
            self._fetch(path)

    def on(self, path: str, *needles: str) -> bool:
        """Whether one item of the page at `path` (any of its pages) shows every needle."""
        self.visit(path)
        return any(all(n in item for n in needles) for item in self.items.get(_base(path), ()))

    def page_has(self, path: str, needle: str) -> bool:
        self.visit(path)
        return needle in self.text.get(_base(path), "")


def _base(path: str) -> str:
    return unquote(path).split("?")[0]


def _words(markup: str) -> str:
    markup = re.sub(r"<(script|style)\b.*?</\1>", " ", markup, flags=re.S)
    markup = re.sub(r"<details\b.*?</details>", " ", markup, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def _main(markup: str) -> str:
    """The record's part of a page: the patient banner and the main content."""
    found = re.search(r'(<section class="patient-banner".*?)?<main\b.*?</main>', markup, re.S)
    return found.group(0) if found else markup


# ---- where each resource is shown, and by what words -------------------------------------


def _observation(site: Site, r: dict[str, Any]) -> bool:
    """In its visit (each visit lists its measurements and results), else on its page."""
    c = classify(r)
    name = lab_name(concept_text(r.get("code")) or "")
    if c.code in vitals.BP_PANELS:
        in_visit = site.on("/records/visits", "Blood pressure: ")
    else:
        in_visit = site.on("/records/visits", f"{name}: {value_text(r) or ''}")
    if in_visit and r.get("encounter"):
        return True
    page = OBSERVATION_PAGES[c.category]
    when = date_text(r.get("effectiveDateTime")) or date_text(r.get("issued")) or ""
    if c.category in labs.RESULTS:
        return site.on(f"/records/labs/test/{labs.test_key(c.code, c.display)}", when)
    if c.category == "vitals":
        kind = vitals.KIND_BY_CODE.get(c.code or "")
        if kind is not None:
            return site.on(f"/records/vitals/{kind.key}", when)
        return site.page_has(page, lab_name(tidy(c.display) or ""))
    # Smoking and the other social-history questions are social history wherever filed.
    social = site.page_has(OBSERVATION_PAGES["social"], value_text(r) or "?")
    return social or site.page_has(page, lab_name(concept_text(r.get("code")) or "?"))


def _report(site: Site, r: dict[str, Any]) -> bool:
    name = lab_name(concept_text(r.get("code")) or "")
    when = date_text(r.get("effectiveDateTime")) or ""
    shown = False
    if r.get("result"):
        shown = site.on("/records/labs/panels", name, when)
    if r.get("presentedForm"):
        shown = shown or site.on("/records/documents", when)
    return shown


def _claim(site: Site, r: dict[str, Any]) -> bool:
    period = r.get("billablePeriod") or {}
    return site.on("/records/bills", date_text(period.get("start") or r.get("created")) or "")


CHECKS: dict[str, Callable[[Site, dict[str, Any]], bool]] = {
    "Patient": lambda s, r: s.page_has("/records/", tidy_person(person_name(r["name"]) or "")),
    "Condition": lambda s, r: s.page_has(SHOWN_ON["Condition"], concept_text(r["code"]) or ""),
    "MedicationRequest": lambda s, r: s.page_has(
        SHOWN_ON["MedicationRequest"],
        medicine_name(concept_text(r.get("medicationCodeableConcept"))) or "",
    ),
    "AllergyIntolerance": lambda s, r: s.page_has("/records/allergies", concept_text(r["code"])),
    "Immunization": lambda s, r: s.on(
        "/records/immunizations",
        concept_text(r["vaccineCode"]) or "",
        date_text(r.get("occurrenceDateTime")) or "",
    ),
    "Observation": _observation,
    "DiagnosticReport": _report,
    "Encounter": lambda s, r: s.on(
        "/records/visits",
        date_text((r.get("period") or {}).get("start")) or "",
        concept_text(r.get("type")) or "",
    ),
    "Procedure": lambda s, r: s.on(
        "/records/procedures",
        concept_text(r["code"]) or "",
        date_text(r.get("performedDateTime") or (r.get("performedPeriod") or {}).get("start"))
        or "",
    ),
    "ImagingStudy": lambda s, r: s.on("/records/imaging", date_text(r.get("started")) or ""),
    "CarePlan": lambda s, r: s.page_has(
        SHOWN_ON["CarePlan"], category_text(r.get("category")) or "Care plan"
    ),
    "Goal": lambda s, r: s.page_has(
        SHOWN_ON["Goal"], lab_name(concept_text(r.get("description")) or "")
    ),
    "Organization": lambda s, r: s.page_has("/records/care-team", plain_case(r["name"]) or ""),
    "Practitioner": lambda s, r: s.page_has(
        "/records/care-team", tidy_person(person_name(r["name"]) or "")
    ),
    "Claim": _claim,
    "ExplanationOfBenefit": _claim,
}


def test_every_type_the_sync_stores_has_its_page() -> None:
    fetched = {s.resource_type for s in plan(f.ALL_SCOPE, "p")} | set(REFERENCED_TYPES)
    assert fetched <= set(SHOWN_ON), fetched - set(SHOWN_ON)


@pytest.fixture(scope="module")
def shared_app(database_url: str) -> Iterator[Flask]:
    """One app for every bundle (its templates compiled once), each bundle its own patient;
    the tables emptied afterwards, as the `app` fixture does."""
    forget_policy()
    app = create_app(app_config(database_url))
    yield app
    close_emptied(app)


@pytest.fixture
def site(request: pytest.FixtureRequest, shared_app: Flask) -> Any:
    name: str = request.param
    if name == MISSING:
        message = f"shared Synthea bundles not found in {SHARED} (set PORTAL_SHARED_FHIR)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with shared_app.app_context():
        account = f.make_account(db.session, "Synthea Patient")
        connection = f.make_connection(db.session, account)
        resources = f.add_bundle(db.session, connection, json.loads((SHARED / name).read_text()))
        db.session.commit()
        account_id = account.id
    client = shared_app.test_client()
    with client.session_transaction() as s:
        begin(s, account_id)
    return Site(client), resources


@pytest.mark.parametrize("site", FILES, indirect=True)
def test_every_resource_is_shown_in_plain_words(site: tuple[Site, list[dict[str, Any]]]) -> None:
    pages, resources = site
    # A claim the insurer answered is shown through its answer (portal.phr.claims).
    answer = {
        str(r["claim"]["reference"]).rsplit("/", 1)[-1]: r
        for r in resources
        if r["resourceType"] == "ExplanationOfBenefit" and r.get("claim")
    }
    missing = []
    for r in resources:
        rtype = r["resourceType"]
        assert rtype in SHOWN_ON, f"{rtype} is shown on no records page"
        assert classify(r).category != "other", rtype
        if classify(r).status == "entered-in-error":
            continue
        shown_as = answer.get(r["id"], r) if rtype == "Claim" else r
        if not CHECKS[rtype](pages, shown_as):
            missing.append(f"{rtype}/{r['id']}")
    assert not missing, f"not on their page: {missing[:10]} ({len(missing)} in all)"
    _ejection_fraction_is_a_result(pages, resources)
    for path, text in pages.text.items():
        raw = sorted({m.group(0) for m in RAW.finditer(text)})
        assert not raw, f"{path} shows {raw}"
        assert not LOWER_MONTH.search(text), f"{path}: a month in lower case"
    shouted = {r["name"] for r in resources if r["resourceType"] == "Organization"}
    shouted = {n for n in shouted if is_shouted(n)}
    for path, text in pages.text.items():
        assert not [n for n in shouted if n in text], f"{path} shows a clinic's name in capitals"


EJECTION_FRACTION = "10230-1"  # LOINC: left ventricular ejection fraction


def _ejection_fraction_is_a_result(pages: Site, resources: list[dict[str, Any]]) -> None:
    """Filed under imaging (or nowhere), an ejection fraction is still among the results."""
    fractions = [
        r
        for r in resources
        if r["resourceType"] == "Observation" and EJECTION_FRACTION in str(r.get("code"))
    ]
    if not fractions:
        return
    assert pages.page_has("/records/labs", "Left ventricular Ejection fraction")
    for r in fractions:
        assert pages.on(f"/records/labs/test/{EJECTION_FRACTION}", value_text(r) or "?")


def _with_ejection_fraction() -> list[str]:
    return [n for n in FILES if n != MISSING and EJECTION_FRACTION in (SHARED / n).read_text()]


def test_two_bundles_have_an_ejection_fraction() -> None:
    if FILES == [MISSING]:
        pytest.skip("shared Synthea bundles not found")
    assert len(_with_ejection_fraction()) == 2
