"""The person's sessions: the idle warning and "Stay signed in", the account page with the
active sessions and the password, and unlocking a launch session into a full one."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_htmx.responses import make_response as htmx_response
from werkzeug.wrappers import Response

from portal.accounts import service
from portal.extensions import db, htmx
from portal.models import Account, SessionKind
from portal.sessions import describe
from portal.web import shown, signin_guard
from portal.web.auth import (
    current_account,
    end_other_sessions,
    full_session_required,
    go,
    is_launch_session,
    keep_draft,
    login_required,
    safe_next,
    sign_in,
    to_signin,
)
from portal.web.forms import (
    PortalForm,
    current_password,
    email_field,
    new_password,
    repeated_password,
)
from portal.web.sessions import ENDED_KEY, ServerSession, current_session, interface, passive

bp = Blueprint("sessions", __name__)


class PasswordChangeForm(PortalForm):
    current = current_password("Your current password")
    password = new_password("New password")
    confirm = repeated_password("Repeat the new password")


class UnlockForm(PortalForm):
    password = current_password("Your portal password")


class FirstPasswordForm(PortalForm):
    email = email_field("Your email (you sign in with it)")
    password = new_password("Choose a password")
    confirm = repeated_password()


def _session() -> ServerSession:
    current = current_session()
    assert current is not None
    return current


# -- the idle warning ---------------------------------------------------------------------------


def watch_context() -> dict[str, object]:
    """What base.html needs to schedule the session check of a signed-in page."""
    record = _session().record
    if record is None or record.account_id is None:
        return {}
    timeouts = interface().timeouts
    now = interface().clock()
    return {"session_watch_in": _seconds_until_warning(record.ends_at(), now, timeouts.warning)}


def session_ended() -> Response:
    """Tell the page its session has ended. Not a redirect yet: the page first sends an entry
    form being typed in (kept as a draft for the next sign-in), else goes to sign-in itself
    (static/portal.js)."""
    found = urlsplit(to_signin().headers.get("HX-Redirect") or url_for("accounts.signin"))
    signin = found.path + (f"?{found.query}" if found.query else "")
    response: Response = htmx_response("", trigger={"session-ended": {"signin": signin}})
    return response


def _seconds_until_warning(ends: datetime, now: datetime, warning: timedelta) -> int:
    return max(1, int((ends - warning - now).total_seconds()) + 1)


@bp.get("/session/status")
@passive
def status() -> Response | str:
    """Asked by a signed-in page when the warning may be due: warn, wait again, or, once the
    session has ended, send the page to sign-in."""
    record = _session().record
    if record is None or _session().get("account_id") is None:
        return session_ended()
    now = interface().clock()
    timeouts = interface().timeouts
    left = (record.ends_at() - now).total_seconds()
    if left > timeouts.warning.total_seconds():
        return render_template(
            "sessions/_watch.html",
            session_watch_in=_seconds_until_warning(record.ends_at(), now, timeouts.warning),
        )
    return render_template(
        "sessions/_warning.html",
        seconds_left=max(1, int(left)),
        idle_end=record.idle_until < record.expires_at,
    )


@bp.post("/session/extend")
def extend() -> Response | str:
    """ "Stay signed in": an active request, so the session's idle end moves on."""
    timeouts = interface().timeouts
    return render_template(
        "sessions/_watch.html",
        session_watch_in=int((timeouts.idle - timeouts.warning).total_seconds()) + 1,
    )


extend.needs_signin = True  # type: ignore[attr-defined]  # after the end: see stop_ended_posts


def stop_ended_posts() -> Response | None:
    """A form sent to a signed-in page by a browser that is not signed in (its session has
    ended meanwhile): keep what was typed as a draft for the same person's next sign-in, and
    go to sign-in. Ahead of CSRF, which would refuse the form of a session that is gone."""
    current = current_session()
    if current is None or request.method != "POST" or current.get("account_id") is not None:
        return None
    view = current_app.view_functions.get(request.endpoint or "")
    if not getattr(view, "needs_signin", False):
        return None
    if htmx:  # the page decides: send the entry form being typed in, or go to sign-in
        return session_ended()
    ended = current.get(ENDED_KEY) or {}
    if ended.get("account") is not None:
        keep_draft(int(ended["account"]))
    response: Response = to_signin()
    return response


def _is_server_session() -> bool:
    return current_session() is not None


def install(app: Flask) -> None:
    """Register the blueprint, and the ended-session check ahead of every other hook."""
    app.register_blueprint(bp)
    app.before_request_funcs.setdefault(None, []).insert(0, stop_ended_posts)

    @app.context_processor
    def _session_facts() -> dict[str, object]:
        timeouts = interface().timeouts
        facts: dict[str, object] = {
            "idle_minutes": round(timeouts.idle.total_seconds() / 60),
            "absolute_hours": round(timeouts.absolute.total_seconds() / 3600),
        }
        if _is_server_session():
            facts.update(watch_context(), launch_session=is_launch_session())
        return facts


# -- the account page ---------------------------------------------------------------------------


@bp.get("/account")
@full_session_required
def account() -> str:
    return _account_page(PasswordChangeForm())


def _account_page(form: PasswordChangeForm, shown_form: shown.ShownForm | None = None) -> str:
    person = current_account()
    assert person is not None
    now = interface().clock()
    current = _session().record
    sessions = [
        describe(r, current=current is not None and r.sid_hash == current.sid_hash, now=now)
        for r in interface().store.for_account(person.id, now)
    ]
    return render_template(
        "sessions/account.html",
        form=form,
        shown_form=shown_form or shown.form_for(person),
        sessions=sessions,
        has_password=bool(person.password_hash),
    )


@bp.post("/account/shown")
@full_session_required
def change_shown() -> Response | tuple[str, int]:
    """The units and time zone the person's record is shown in."""
    person = current_account()
    assert person is not None
    form = shown.ShownForm()
    if form.validate_on_submit() and shown.choose(person, form):
        flash("Saved: your record is shown in these units and this time zone.")
        return redirect(url_for("sessions.account"))
    return _account_page(PasswordChangeForm(formdata=None), shown_form=form), 400


@bp.post("/account/sessions/end-others")
@full_session_required
def end_others() -> Response:
    person = current_account()
    assert person is not None
    end_other_sessions(person)
    flash("Signed out everywhere else: those browsers need your password again.")
    return redirect(url_for("sessions.account"))


@bp.post("/account/password")
@full_session_required
def change_password() -> Response | tuple[str, int]:
    person = current_account()
    assert person is not None
    form = PasswordChangeForm()
    if form.validate_on_submit():
        pause = signin_guard.attempt(person.email or "")  # guessing here counts as at sign-in
        if pause is not None:
            return _paused(pause)
        try:
            service.change_password(
                db.session, person, form.current.data or "", form.password.data or ""
            )
        except service.WrongPassword as exc:
            form.current.errors = [str(exc)]
        except service.AccountError as exc:
            form.password.errors = [str(exc)]
        else:
            signin_guard.succeeded(person.email or "")
            sign_in(person)  # a new id for this browser; every other session ends
            end_other_sessions(person)
            flash("Your password is changed. Every other session of your account has ended.")
            return redirect(url_for("sessions.account"))
    return _account_page(form), 400


# -- from a launch session to the whole account -------------------------------------------------


@bp.route("/account/unlock", methods=["GET", "POST"])
@login_required
def unlock() -> Response | str | tuple[str, int]:
    """A browser an EHR launched sees that clinic only; the account's password (or, for an
    account a launch made, a new one) opens everything, under a new session id."""
    person = current_account()
    assert person is not None
    next_url = safe_next(request.args.get("next"), url_for("records.summary"))
    if not is_launch_session():
        return redirect(next_url)
    form: PortalForm = UnlockForm() if person.password_hash else FirstPasswordForm()
    if form.validate_on_submit():
        password = form.password.data or ""
        if person.password_hash:
            pause = signin_guard.attempt(person.email or "")  # guesses count as at sign-in
            if pause is not None:
                return _paused(pause)
            if service.check_account_password(person, password):
                signin_guard.succeeded(person.email or "")
                return _unlocked(person, next_url)
            form.password.errors = ["That is not your portal password."]
        else:
            email = form.email.data or ""
            try:
                service.set_first_password(db.session, person, email, password)
            except service.EmailTaken as exc:
                form.email.errors = [str(exc)]
            except service.AccountError as exc:
                form.password.errors = [str(exc)]
            else:
                return _unlocked(person, next_url)
    status = 400 if form.errors else 200
    page = render_template(
        "sessions/unlock.html",
        form=form,
        next_url=next_url,
        has_password=bool(person.password_hash),
        email=person.email,
    )
    return page, status


def _unlocked(person: Account, next_url: str) -> Response:
    sign_in(person, kind=SessionKind.FULL)
    flash("Your whole record is open: every clinic and your own entries.")
    response: Response = go(next_url)
    return response


def _paused(pause: signin_guard.Pause) -> Response:
    page = render_template("accounts/signin_paused.html", pause=pause)
    response: Response = make_response(page, 429)
    response.headers["Retry-After"] = str(pause.retry_after)
    return response
