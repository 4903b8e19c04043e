"""The records pages: the merged record of every connected clinic, section by section.

Each view: sign-in required, then `record_or_403()` (access is decided here, never in a
template: an htmx fragment bypasses template conditions), then the domain, then render.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, make_response, request, url_for
from werkzeug.exceptions import NotFound

from portal.db import utcnow
from portal.extensions import db
from portal.phr import documents as docs
from portal.phr import labs as lab_results
from portal.phr import lists
from portal.phr import records as rec
from portal.phr import summary as summ
from portal.phr import visits as visit_timeline
from portal.phr import vitals as vital_signs
from portal.phr.access import RecordView
from portal.phr.records import Records
from portal.web.auth import current_account, login_required, record_or_403
from portal.web.htmx import render, wants_fragment

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
    ("records.visits", "Visits", "visits"),
    ("records.procedures", "Procedures", "procedures"),
    ("records.documents", "Documents", "documents"),
    ("records.care_plans", "Care plans", "careplans"),
    ("records.care_team", "Care team", "careteam"),
    ("records.coverage", "Coverage", "coverage"),
)


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


def _page(template: str, block: str, records: Records, **context: object) -> Response:
    """Render a records page; the banner is worked out only for full pages."""
    if not wants_fragment():
        account = current_account()
        context["banner"] = rec.banner(
            records, account.display_name if account else "", utcnow().date()
        )
    context["sections"] = [
        (endpoint, label)
        for endpoint, label, section in SECTIONS
        if section is None or records.view.allows(section)
    ]
    context["connect_url"] = url_for("connect.connections")
    return render(template, block, **context)


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
    data = summ.summary(records, utcnow())
    return _page("records/summary.html", "content", records, summary=data)


@bp.get("/problems")
@login_required
def problems() -> Response:
    record = record_or_403()
    records = _records(record, "problems")
    show = _choice("show", ("active", "past", "all"))
    items = lists.problems(records, show)
    return _page(
        "records/problems.html",
        "list",
        records,
        items=items,
        show=show,
        state=records.section("problems"),
    )


@bp.get("/medications")
@login_required
def medications() -> Response:
    record = record_or_403()
    records = _records(record, "medications")
    show = _choice("show", ("current", "past", "all"))
    items = lists.medications(records, show)
    return _page(
        "records/medications.html",
        "list",
        records,
        items=items,
        show=show,
        state=records.section("medications"),
    )


@bp.get("/allergies")
@login_required
def allergies() -> Response:
    record = record_or_403()
    records = _records(record, "allergies")
    return _page(
        "records/allergies.html",
        "content",
        records,
        items=lists.allergies(records),
        state=records.section("allergies"),
    )


@bp.get("/immunizations")
@login_required
def immunizations() -> Response:
    record = record_or_403()
    records = _records(record, "immunizations")
    return _page(
        "records/immunizations.html",
        "list",
        records,
        page=lists.immunizations(records, _int_arg("page")),
        state=records.section("immunizations"),
    )


@bp.get("/labs")
@login_required
def labs() -> Response:
    record = record_or_403()
    records = _records(record, "labs")
    data = lab_results.overview(records, _int_arg("page"))
    return _page("records/labs.html", "tests", records, data=data, state=records.section("labs"))


@bp.get("/labs/test/<path:key>")
@login_required
def lab_test(key: str) -> Response:
    record = record_or_403()
    records = _records(record, "labs")
    test = lab_results.test_history(records, key)
    if test is None:
        abort(404)
    return _page("records/lab_test.html", "history", records, test=test)


@bp.get("/vitals")
@login_required
def vitals() -> Response:
    record = record_or_403()
    records = _records(record, "vitals")
    return _page(
        "records/vitals.html",
        "content",
        records,
        data=vital_signs.vitals(records),
        state=records.section("vitals"),
    )


@bp.get("/vitals/<kind>")
@login_required
def vital_history(kind: str) -> Response:
    record = record_or_403()
    records = _records(record, "vitals")
    card = vital_signs.vital_history(records, kind)
    if card is None:
        abort(404)
    return _page("records/vital_history.html", "history", records, card=card)


@bp.get("/visits")
@login_required
def visits() -> Response:
    record = record_or_403()
    records = _records(record, "visits")
    page = visit_timeline.visits(records, _int_arg("page"))
    return _page("records/visits.html", "list", records, page=page, state=records.section("visits"))


@bp.get("/procedures")
@login_required
def procedures() -> Response:
    record = record_or_403()
    records = _records(record, "procedures")
    page = lists.procedures(records, _int_arg("page"))
    return _page(
        "records/procedures.html",
        "list",
        records,
        page=page,
        state=records.section("procedures"),
    )


@bp.get("/documents")
@login_required
def documents() -> Response:
    record = record_or_403()
    records = _records(record, "documents")
    page = docs.documents(records, _int_arg("page"))
    return _page(
        "records/documents.html",
        "list",
        records,
        page=page,
        state=records.section("documents"),
    )


@bp.get("/documents/<int:record_id>/attachments/<int:index>")
@login_required
def document_download(record_id: int, index: int) -> Response:
    record = record_or_403()
    records = _records(record, "documents")
    found = docs.download(records, record_id, index)
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
    return _page(
        "records/care_plans.html",
        "plans",
        records,
        plans=lists.care_plans(records, show),
        goals=lists.goals(records),
        show=show,
        state=records.section("careplans"),
    )


@bp.get("/care-team")
@login_required
def care_team() -> Response:
    record = record_or_403()
    records = _records(record, "careteam")
    return _page(
        "records/care_team.html",
        "content",
        records,
        teams=lists.care_teams(records),
        contacts=lists.contacts(records),
        state=records.section("careteam"),
        directory_state=records.section("directory"),
    )


@bp.get("/coverage")
@login_required
def coverage() -> Response:
    record = record_or_403()
    records = _records(record, "coverage")
    return _page(
        "records/coverage.html",
        "content",
        records,
        items=lists.coverage(records),
        state=records.section("coverage"),
    )
