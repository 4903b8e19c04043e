"""Connecting EHRs: EHR launch, standalone connect, the OAuth callback, sync and disconnect.

Identity after a launch comes only from the token response (patient, validated id_token);
no request parameter can choose the account or the patient.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException

from portal import jobs
from portal.extensions import config_limit, db, limiter
from portal.models import Account, EhrConnection, EhrServer, SessionKind
from portal.phr.access import Action
from portal.registry import find_ehr
from portal.smart import style
from portal.smart.errors import SmartError, failure_reference
from portal.smart.oauth import begin, complete, new_browser_binding
from portal.smart.tokens import connect, disconnect, find_or_create_account_for_launch
from portal.sync import status as sync_status
from portal.sync import worker as sync_worker
from portal.sync.engine import enqueue
from portal.web import records
from portal.web.auth import (
    current_account,
    full_session_required,
    is_launch_session,
    login_required,
    record_or_403,
    sign_in,
)
from portal.web.htmx import render, wants_fragment
from portal.web.sessions import passive

bp = Blueprint("connect", __name__)


def _binding() -> str:
    """The random value tying OAuth transactions to this browser's session."""
    binding = session.get("oauth_binding")
    if not binding:
        binding = new_browser_binding()
        session["oauth_binding"] = binding
    return str(binding)


def _redirect_uri() -> str:
    # From configuration, never from the Host header: it must equal the registered URI.
    return str(current_app.config["PUBLIC_URL"]).rstrip("/") + "/oauth/callback"


def _problem(title: str, message: str, status: int, reference: str | None = None):
    page = render_template(
        "connect/problem.html", title=title, message=message, reference=reference
    )
    return page, status


def _failed(exc: SmartError, what: str):
    """The page for a failed connection, with a reference the clinic's IT team can find in
    the log line next to the step, OAuth error code, HTTP status and EHR (never a secret)."""
    reference = failure_reference()
    current_app.logger.warning("%s [ref %s]: %s", what, reference, exc.log_fields())
    return _problem(exc.public_title, exc.public_message, exc.status, reference)


@bp.get("/launch")
@limiter.limit(config_limit("LAUNCH_RATE_LIMIT"))
def ehr_launch():
    """The launch URL registered with EHRs: `iss` must be a registered EHR."""
    iss, launch = request.args.get("iss", ""), request.args.get("launch", "")
    if not iss or not launch:
        return _problem(
            "Open this from your clinic",
            "This address is opened by your clinic's health record system. "
            "To connect a clinic yourself, sign in and choose “Connect a clinic”.",
            400,
        )
    ehr = find_ehr(db.session, iss)
    if ehr is None:  # refused before any request leaves the portal
        return _problem(
            "Unknown health record system",
            "This health record system is not registered with the portal, so we did not "
            "contact it. Ask your clinic to register the portal.",
            400,
        )
    return _authorize(ehr, kind="ehr-launch", launch=launch)


@bp.get("/connect/<int:ehr_id>")
@limiter.limit(config_limit("LAUNCH_RATE_LIMIT"))
@full_session_required
def connect_ehr(ehr_id: int):
    """Standalone launch: the signed-in patient connects a registered EHR.

    A link, not a form: the CSP's `form-action 'self'` would block a form's redirect to the
    EHR. Starting is harmless to repeat: it only stores a transaction bound to this browser.
    """
    ehr = db.session.get(EhrServer, ehr_id)
    if ehr is None:
        abort(404)
    account = current_account()
    assert account is not None  # login_required
    return _authorize(ehr, kind="standalone", account_id=account.id)


def _authorize(
    ehr: EhrServer, *, kind: str, launch: str | None = None, account_id: int | None = None
):
    try:
        url = begin(
            db.session,
            ehr,
            kind=kind,
            launch=launch,
            account_id=account_id,
            redirect_uri=_redirect_uri(),
            browser_binding=_binding(),
        )
    except SmartError as exc:
        return _failed(exc.at(ehr.id, ehr.name), "authorization not started")
    return redirect(url)


@bp.get("/oauth/callback")
@limiter.limit(config_limit("LAUNCH_RATE_LIMIT"))
def callback():
    args = request.args
    try:
        result = complete(
            db.session,
            state=args.get("state"),
            code=args.get("code"),
            error=args.get("error"),
            error_description=args.get("error_description"),
            browser_binding=session.get("oauth_binding"),
            redirect_uri=_redirect_uri(),
            iss=args.get("iss"),
        )
    except SmartError as exc:
        return _failed(exc, "connecting failed")
    ehr = db.session.get(EhrServer, result.ehr_id)
    assert ehr is not None  # complete() checked it
    if result.kind == "ehr-launch":
        account: Account | None = find_or_create_account_for_launch(db.session, ehr, result)
        assert account is not None
    else:
        account = current_account()
        if account is None or account.id != result.account_id:
            return _problem(
                "Please sign in again",
                "You were signed out while connecting your clinic. Sign in and connect again.",
                403,
            )
    connection = connect(db.session, result, account)
    if result.kind == "ehr-launch":
        _begin_launch_session(account, connection)
        session["launched_from"] = connection.id  # the summary says what the clinic had open
    _sync_in_background(enqueue(db.session, connection.id).id)
    flash(f"Connected to {ehr.name}. Your records are being fetched.")
    return redirect(url_for("records.summary"))


def _begin_launch_session(account: Account, connection: EhrConnection) -> None:
    """A browser an EHR launched sees that clinic only, under a new session id; one already
    signed in to this very account in full stays so (it showed the password already)."""
    signed_in = current_account()
    if signed_in is not None and signed_in.id == account.id and not is_launch_session():
        sign_in(account)
    else:
        sign_in(account, kind=SessionKind.LAUNCH, connection_id=connection.id)


def _sync_in_background(run_id: int) -> None:
    """Once the request has committed the run, fetch on the job queue; the records pages
    are prepared when it ends."""
    jobs.later("sync.run", run_id)


# Wherever the job runs (a worker process builds the app too), it prepares the pages.
sync_worker.on_run_ended(records.prepare_pages)


def _own_connection(connection_id: int, action: Action | None = None) -> EhrConnection:
    """Load-or-404 (only clinic connections), then check the viewer sees it in the record and
    may do `action`, else 403."""
    connection = db.session.get(EhrConnection, connection_id)
    if connection is None or connection.is_self:
        abort(404)
    view = record_or_403(action=action)
    if connection.account_id != view.owner.id or not view.sees_connection(connection.id):
        abort(403)
    return connection


@bp.get("/connect")
@full_session_required
def connections():
    account = current_account()
    assert account is not None
    overview = sync_status.overview(db.session, account.id)
    return render(
        "connect/index.html",
        "connections",
        overview=overview,
        ehrs=sync_status.registry(db.session),
        connected={c.ehr_id for c in overview if c.status == "active"},
    )


@bp.post("/connections/<int:connection_id>/sync")
@login_required
def sync_now(connection_id: int):
    connection = _own_connection(connection_id, Action.SYNC)
    if connection.status != "active":
        flash(f"Reconnect {connection.server.name} first: it needs you to sign in there again.")
        return redirect(url_for("connect.connections"))
    _sync_in_background(enqueue(db.session, connection.id).id)
    flash(f"Fetching your latest records from {connection.server.name}.")
    return redirect(
        request.referrer if _same_site(request.referrer) else url_for("records.summary")
    )


@bp.post("/connections/<int:connection_id>/disconnect")
@full_session_required
def disconnect_connection(connection_id: int):
    connection = _own_connection(connection_id, Action.MANAGE)
    disconnect(db.session, connection)
    flash(
        f"Disconnected from {connection.server.name}. The portal can no longer read your record "
        "there; what was already fetched stays in your record."
    )
    return redirect(url_for("connect.connections"))


@bp.get("/sync/status")
@passive  # the page polls by itself: no sign of the person being there
@login_required
def status():
    """Live sync progress (polled by htmx while a sync runs) of the clinics the viewer sees."""
    view = record_or_403()
    overview = sync_status.of_connections(
        db.session, [c for c in view.connections if not c.is_self]
    )
    watch = request.args.get("watch") == "1"
    response = render("connect/status.html", "sync_status", overview=overview, watch=watch)
    if watch and wants_fragment() and not any(c.syncing for c in overview):
        # The page that was watching shows records: reload it now that they are all here.
        response.headers["HX-Refresh"] = "true"
    return response


def _same_site(url: str | None) -> bool:
    public = str(current_app.config["PUBLIC_URL"]).rstrip("/")
    return bool(url) and (url == public or str(url).startswith(public + "/"))


@bp.get("/style/<int:connection_id>.css")
@login_required
def ehr_style(connection_id: int):
    """The launching EHR's look (smart_style_url), as checked, same-origin CSS."""
    connection = _own_connection(connection_id)
    url = connection.smart_style_url
    css = style.css_for(url, connection.server) if url else ""  # from the EHR's own origins
    response = make_response(css)
    response.mimetype = "text/css"  # no-store like every page: it says which clinic launched
    return response


@bp.app_context_processor
def inject_style() -> dict[str, object]:
    """Link the EHR style of the signed-in person's most recent EHR launch, when it sent one."""
    account_id = session.get("account_id")
    if not account_id:
        return {}
    view = g.get("record_view")
    if view is None and is_launch_session():  # that clinic's look, whatever the others sent
        try:
            view = record_or_403()
        except HTTPException:  # the launch has ended: no clinic's look
            return {}
    if view is not None and view.owner.id == account_id:  # the page loaded them already
        styled = [c for c in view.connections if c.smart_style_url and c.status == "active"]
        if not styled:
            return {}
        newest = max(styled, key=lambda c: (c.updated_at or c.created_at, c.id))
        return {"smart_style_href": url_for("connect.ehr_style", connection_id=newest.id)}
    connection_id = db.session.scalar(
        sa.select(EhrConnection.id)
        .where(
            EhrConnection.account_id == account_id,
            EhrConnection.smart_style_url.is_not(None),
            EhrConnection.status == "active",
        )
        .order_by(sa.func.coalesce(EhrConnection.updated_at, EhrConnection.created_at).desc())
        .limit(1)
    )
    if connection_id is None:
        return {}
    return {"smart_style_href": url_for("connect.ehr_style", connection_id=connection_id)}


@bp.app_template_filter("age")
def age_filter(when):
    return sync_status.age_in_words(when)
