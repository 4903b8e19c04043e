"""The records pages: the merged record of every connected clinic, section by section.

Each view: sign-in required, then `record_or_403()` (access is decided here, never in a
template: an htmx fragment bypasses template conditions), then the domain, then render.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    make_response,
    render_template,
    request,
    session,
    url_for,
)
from jinja2_fragments.flask import render_block
from markupsafe import Markup
from werkzeug.exceptions import NotFound

from portal.build import build_id as portal_build_id
from portal.db import utcnow
from portal.extensions import db
from portal.models import EhrConnection, SyncRun
from portal.phr import (
    answers,
    availability,
    claims,
    imaging,
    launch,
    lists,
    localtime,
    panels,
    places,
    snapshots,
)
from portal.phr import documents as docs
from portal.phr import labs as lab_results
from portal.phr import records as rec
from portal.phr import summary as summ
from portal.phr import visits as visit_timeline
from portal.phr import vitals as vital_signs
from portal.phr.access import Action, RecordView
from portal.phr.records import Records
from portal.sync import status as sync_status
from portal.web.auth import act_as, login_required, record_or_403
from portal.web.htmx import render_html, wants_fragment

bp = Blueprint("records", __name__, url_prefix="/records")

# (endpoint, label, section) of the section navigation, in order.
SECTIONS = (
    ("records.summary", "Summary", None),
    ("records.problems", "Problems", "problems"),
    ("records.medications", "Medications", "medications"),
    ("records.allergies", "Allergies", "allergies"),
    ("records.immunizations", "Immunizations", "immunizations"),
    ("records.labs", "Lab results", "labs"),
    ("records.vitals", "Vitals", "vitals"),
    ("records.social_history", "Social history", "social"),
    ("records.questionnaires", "Questionnaires", "surveys"),
    ("records.visits", "Visits", "visits"),
    ("records.procedures", "Procedures", "procedures"),
    ("records.documents", "Documents", "documents"),
    ("records.imaging_studies", "Imaging", "imaging"),
    ("records.care_plans", "Care plans", "careplans"),
    ("records.care_team", "Care team", "careteam"),
    ("records.coverage", "Coverage", "coverage"),
    ("records.bills", "Bills and claims", "claims"),
)
SECTION_PAGES = {section: endpoint for endpoint, _label, section in SECTIONS if section}
# Prepared as soon as a sync ends: where a patient lands and the first page of each section.
LANDING = tuple(endpoint for endpoint, _label, _section in SECTIONS)

# Pages under a section's entry in the navigation.
NAV_PARENT = {
    "records.lab_test": "records.labs",
    "records.lab_panels": "records.labs",
    "records.vital_history": "records.vitals",
}


@bp.after_request
def _headers(response: Response) -> Response:
    response.vary.add("HX-Request")
    response.headers["Cache-Control"] = "private, no-store"  # health data stays off disk caches
    return response  # the app-wide CSP lets registered EHRs frame these pages


def _records(record: RecordView, section: str | None) -> Records:
    """The domain reader for this record, once the viewer may see `section` of it."""
    if section is not None and not record.allows(section):
        abort(403)
    return Records(db.session, record)


def _page(
    records: Records,
    template: str,
    block: str,
    title: str,
    build: Callable[[], dict[str, Any]],
    *params: object,
    top: tuple[str, dict[str, Any]] | None = None,
) -> Response:
    """A records page (or, for htmx, its `block`), prepared once per version of the record.

    `build` gives the template context (it runs only when the page is not prepared yet; a
    `page_title` in it overrides `title`); `params` are the validated request parameters the
    page depends on; `top` is a live part shown above the prepared one (template, context).
    """
    fragment = wants_fragment()
    part = block if fragment else "records_main"
    today = localtime.today(utcnow())  # the patient's day (ages, "current")
    build_id = portal_build_id()  # a deploy makes prepared pages miss
    # What the clinics' syncs say of each section is part of the page, as the records are.
    answers = availability.version(records)
    key = snapshots.key(records.view, build_id, today, (template, part, answers, *params))
    snapshot = snapshots.find(db.session, key)
    if snapshot is None:
        context = build()
        context["connect_url"] = url_for("connect.connections")
        context["can_add"] = records.view.can(Action.ADD)  # the owner, signed in in full
        banner = None
        if not fragment:
            facts = rec.banner(records, records.view.owner.display_name, today)
            banner = render_block("records/_layout.html", "banner", banner=facts)
        snapshot = snapshots.Snapshot(
            title=str(context.get("page_title", title)),
            banner=banner,
            body=render_block(template, part, **context),
        )
        snapshots.keep(db.session, records.view, key, snapshot)
    if fragment:
        return render_html(snapshot.body)
    sections = [
        (_url(endpoint), label, endpoint)
        for endpoint, label, section in SECTIONS
        if section is None or records.view.allows(section)
    ]
    return render_html(
        render_template(
            "records/_page.html",
            page_title=snapshot.title,
            banner_html=_rendered(snapshot.banner or ""),
            top_template=top[0] if top else None,
            **(top[1] if top else {}),
            main_html=_rendered(snapshot.body),
            sections=sections,
            nav_current=NAV_PARENT.get(request.endpoint or "", request.endpoint),
        )
    )


_URLS: dict[tuple[str, str], str] = {}


def _url(endpoint: str) -> str:
    """url_for of a parameterless page, worked out once (the navigation has thirteen)."""
    key = (request.script_root, endpoint)
    if key not in _URLS:
        _URLS[key] = url_for(endpoint)
    return _URLS[key]


def _rendered(html: str) -> Markup:
    """HTML our own autoescaping templates produced (never record text itself)."""
    return Markup(html)  # noqa: S704  # rendered by autoescaping templates, not raw input


def prepare_pages(app: Flask, run_id: int) -> int:
    """Render the landing pages of the record a sync run has just updated, for its owner,
    through the views themselves (so access checks and keys are the ones a visit uses);
    building them folds each section into its stored facts (portal.phr.facts).

    Runs in the sync thread; returns how many pages were prepared."""
    with app.app_context():
        account_id = db.session.scalar(
            sa.select(EhrConnection.account_id)
            .join(SyncRun, SyncRun.connection_id == EhrConnection.id)
            .where(SyncRun.id == run_id)
        )
    return 0 if account_id is None else prepare_record(app, account_id)


def prepare_record(app: Flask, account_id: int) -> int:
    """Render the landing pages of this person's record for them (see `prepare_pages`)."""
    with app.test_request_context("/"):
        paths = [url_for(endpoint) for endpoint in LANDING]
    prepared = 0
    for path in paths:  # one request context each, as separate visits would have
        with app.test_request_context(path):
            act_as(account_id)  # this context only: nothing is stored, no cookie made
            prepared += app.full_dispatch_request().status_code == 200
    return prepared


def _int_arg(name: str, default: int = 1) -> int:
    value = request.args.get(name, type=int)
    return value if value is not None and value > 0 else default


def _choice(name: str, choices: tuple[str, ...]) -> str:
    value = request.args.get(name, choices[0])
    return value if value in choices else choices[0]


@bp.get("/")
@login_required
def summary() -> Response:
    record = record_or_403()
    records = _records(record, None)
    top = None
    if not wants_fragment():  # when each clinic's part was updated: live, never prepared
        syncs = sync_status.of_connections(
            db.session, records.clinics, utcnow(), runs=records.latest_runs
        )
        status = {
            "sync": syncs,
            "connect_url": _url("connect.connections"),
            "launch": _launch_context(records, {s.connection_id for s in syncs if s.syncing}),
        }
        top = ("records/_summary_top.html", status)
    return _page(
        records,
        "records/summary.html",
        "content",
        "Summary",
        lambda: _summary(records),
        top=top,
    )


def _summary(records: Records) -> dict[str, Any]:
    found = summ.summary(records, utcnow())
    return {
        "summary": found,
        "places": places.of_summary(records, found),  # where each item is shown in full
        "social": answers.latest_social(records) if records.view.allows("social") else [],
    }


def _launch_context(records: Records, fetching: set[int]) -> dict[str, Any] | None:
    """What the clinic that launched this browser's session had open (owner only);
    `fetching`: the connections whose records are still arriving."""
    launched = session.get("launched_from")
    account_id = session.get("account_id")
    if records.view.owner.id != account_id:
        return None
    connection = next((c for c in records.clinics if c.id == launched), None)
    if connection is None or not connection.launch_context:
        return None
    items = launch.opened(
        records, connection.id, connection.launch_context, fetching=connection.id in fetching
    )
    return {"ehr_name": connection.source_name, "entries": [(i.words, _link(i)) for i in items]}


def _link(item: launch.Opened) -> str | None:
    """Where an item the clinic had open is shown: its section's page, at its place."""
    endpoint = SECTION_PAGES.get(item.section or "")
    if endpoint is None:
        return None
    page = f"?page={item.page}" if item.page > 1 else ""
    return _url(endpoint) + page + (f"#{item.anchor}" if item.anchor else "")


@bp.get("/problems")
@login_required
def problems() -> Response:
    record = record_or_403()
    records = _records(record, "problems")
    show = _choice("show", ("active", "past", "all"))
    number = _int_arg("page")
    return _page(
        records,
        "records/problems.html",
        "list",
        "Problems",
        lambda: {
            "items": lists.problem_page(records, show, number),
            "show": show,
            "state": records.section("problems"),
        },
        show,
        number,
    )


@bp.get("/medications")
@login_required
def medications() -> Response:
    record = record_or_403()
    records = _records(record, "medications")
    show = _choice("show", ("current", "past", "all"))
    number = _int_arg("page")
    return _page(
        records,
        "records/medications.html",
        "list",
        "Medications",
        lambda: {
            "items": lists.medication_page(records, show, number),
            "show": show,
            "state": records.section("medications"),
        },
        show,
        number,
    )


@bp.get("/allergies")
@login_required
def allergies() -> Response:
    record = record_or_403()
    records = _records(record, "allergies")
    return _page(
        records,
        "records/allergies.html",
        "content",
        "Allergies",
        lambda: {"items": lists.allergies(records), "state": records.section("allergies")},
    )


@bp.get("/immunizations")
@login_required
def immunizations() -> Response:
    record = record_or_403()
    records = _records(record, "immunizations")
    number = _int_arg("page")
    return _page(
        records,
        "records/immunizations.html",
        "list",
        "Immunizations",
        lambda: {
            "page": lists.immunizations(records, number),
            "state": records.section("immunizations"),
        },
        number,
    )


@bp.get("/labs")
@login_required
def labs() -> Response:
    record = record_or_403()
    records = _records(record, "labs")
    number = _int_arg("page")
    return _page(
        records,
        "records/labs.html",
        "tests",
        "Lab results",
        lambda: {
            "data": lab_results.overview(records, number),
            "panels": panels.latest(records),
            "state": records.section("labs"),
        },
        number,
    )


@bp.get("/labs/panels")
@login_required
def lab_panels() -> Response:
    record = record_or_403()
    records = _records(record, "labs")
    number = _int_arg("page")
    return _page(
        records,
        "records/lab_panels.html",
        "list",
        "Lab panels",
        lambda: {"page": panels.panels(records, number), "state": records.section("labs")},
        number,
    )


@bp.get("/labs/test/<path:key>")
@login_required
def lab_test(key: str) -> Response:
    record = record_or_403()
    records = _records(record, "labs")

    number = _int_arg("page")

    def build() -> dict[str, Any]:
        found = lab_results.history(records, key, number)
        if found is None:
            abort(404)
        name = found.test.name
        return {"test": found.test, "page": found.page, "page_title": f"{name} · Lab results"}

    return _page(records, "records/lab_test.html", "history", "Lab results", build, key, number)


@bp.get("/vitals")
@login_required
def vitals() -> Response:
    record = record_or_403()
    records = _records(record, "vitals")
    return _page(
        records,
        "records/vitals.html",
        "content",
        "Vital signs",
        lambda: {
            "data": vital_signs.vitals(records),
            "state": records.section("vitals"),
        },
    )


@bp.get("/vitals/<kind>")
@login_required
def vital_history(kind: str) -> Response:
    record = record_or_403()
    records = _records(record, "vitals")
    number = _int_arg("page")

    def build() -> dict[str, Any]:
        found = vital_signs.vital_history(records, kind, number)
        if found is None:
            abort(404)
        name = found.card.name
        return {"card": found.card, "page": found.page, "page_title": f"{name} · Vital signs"}

    return _page(
        records, "records/vital_history.html", "history", "Vital signs", build, kind, number
    )


@bp.get("/imaging")
@login_required
def imaging_studies() -> Response:
    record = record_or_403()
    records = _records(record, "imaging")
    number = _int_arg("page")
    return _page(
        records,
        "records/imaging.html",
        "list",
        "Imaging",
        lambda: {"page": imaging.studies(records, number), "state": records.section("imaging")},
        number,
    )


@bp.get("/bills")
@login_required
def bills() -> Response:
    record = record_or_403()
    records = _records(record, "claims")
    number = _int_arg("page")
    return _page(
        records,
        "records/bills.html",
        "list",
        "Bills and claims",
        lambda: {"page": claims.bills(records, number), "state": records.section("claims")},
        number,
    )


@bp.get("/social-history")
@login_required
def social_history() -> Response:
    record = record_or_403()
    records = _records(record, "social")
    return _page(
        records,
        "records/social_history.html",
        "list",
        "Social history",
        lambda: {"topics": answers.social_history(records), "state": records.section("social")},
    )


@bp.get("/questionnaires")
@login_required
def questionnaires() -> Response:
    record = record_or_403()
    records = _records(record, "surveys")
    return _page(
        records,
        "records/questionnaires.html",
        "list",
        "Questionnaires",
        lambda: {"topics": answers.questionnaires(records), "state": records.section("surveys")},
    )


@bp.get("/visits")
@login_required
def visits() -> Response:
    record = record_or_403()
    records = _records(record, "visits")
    number = _int_arg("page")
    return _page(
        records,
        "records/visits.html",
        "list",
        "Visits",
        lambda: {
            "page": visit_timeline.visits(records, number),
            "state": records.section("visits"),
        },
        number,
    )


@bp.get("/procedures")
@login_required
def procedures() -> Response:
    record = record_or_403()
    records = _records(record, "procedures")
    number = _int_arg("page")
    return _page(
        records,
        "records/procedures.html",
        "list",
        "Procedures",
        lambda: {
            "page": lists.procedures(records, number),
            "state": records.section("procedures"),
        },
        number,
    )


@bp.get("/documents")
@login_required
def documents() -> Response:
    record = record_or_403()
    records = _records(record, "documents")
    number = _int_arg("page")
    return _page(
        records,
        "records/documents.html",
        "list",
        "Documents",
        lambda: {
            "page": docs.documents(records, number),
            "state": records.section("documents"),
        },
        number,
    )


@bp.get("/documents/<int:record_id>/attachments/<int:index>")
@login_required
def document_download(record_id: int, index: int) -> Response:
    record = record_or_403()
    records = _records(record, "documents")
    try:
        # A document the clinic only links is fetched now, with the connection's token.
        found = docs.download(
            records, record_id, index, session_factory=db.sessionmaker(current_app)
        )
    except docs.DocumentUnavailable as problem:
        page = render_template(
            "connect/problem.html",
            title="Reconnect to get this document"
            if problem.reconnect
            else "This document is not available",
            message=problem.message,
        )
        return make_response(page, problem.status)
    if found is None:
        raise NotFound("This document is not in your record, or it was not copied to the portal.")
    response = make_response(found.data)
    response.headers["Content-Type"] = found.content_type
    response.headers["Content-Disposition"] = f'attachment; filename="{found.filename}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Opened directly, the file still runs nothing and loads nothing.
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@bp.get("/care-plans")
@login_required
def care_plans() -> Response:
    record = record_or_403()
    records = _records(record, "careplans")
    show = _choice("show", ("active", "past", "all"))
    number = _int_arg("page")
    return _page(
        records,
        "records/care_plans.html",
        "plans",
        "Care plans and goals",
        lambda: {
            "plans": lists.care_plan_page(records, show, number),
            "goals": lists.goals(records),
            "show": show,
            "state": records.section("careplans"),
        },
        show,
        number,
    )


@bp.get("/care-team")
@login_required
def care_team() -> Response:
    record = record_or_403()
    records = _records(record, "careteam")
    return _page(
        records,
        "records/care_team.html",
        "content",
        "Care team",
        lambda: {
            "teams": lists.care_teams(records),
            "contacts": lists.contacts(records),
            "state": records.section("careteam"),
            "directory_state": records.section("directory"),
        },
    )


@bp.get("/coverage")
@login_required
def coverage() -> Response:
    record = record_or_403()
    records = _records(record, "coverage")
    return _page(
        records,
        "records/coverage.html",
        "content",
        "Coverage",
        lambda: {
            "items": lists.coverage(records),
            "state": records.section("coverage"),
            # No coverage shared: the insurers the bills name, said to come from the bills.
            "insurers": claims.insurers(records) if records.view.allows("claims") else [],
        },
    )
