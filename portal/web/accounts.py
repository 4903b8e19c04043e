"""Sign up (confirmed by an emailed link), sign in, sign out, password reset.

Sign-up and reset pages answer the same whether or not an account has the email: what
differs is only the mail, sent off the request path (portal.web.account_mail).
"""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from wtforms import StringField
from wtforms.validators import Optional

from portal import jobs
from portal.accounts import passwords, service
from portal.extensions import db, limiter
from portal.web import account_mail, shown, signin_guard
from portal.web.auth import current_account, end_other_sessions, safe_next, sign_in, sign_out
from portal.web.forms import (
    PortalForm,
    at_most,
    current_password,
    email_field,
    new_password,
    repeated_password,
)
from portal.web.sessions import DRAFT_KEY, ENDED_KEY

bp = Blueprint("accounts", __name__)


@bp.record_once
def _configure(state: BlueprintSetupState) -> None:
    passwords.set_max_concurrent(state.app.config["PASSWORD_MAX_CONCURRENT_VERIFIES"])


class SignUpForm(PortalForm):
    display_name = StringField("Your name", validators=[Optional(), at_most(200)])
    email = email_field()
    password = new_password()
    confirm = repeated_password()


class ConfirmForm(PortalForm):
    """The CSRF token (the account is made by a POST, not by a mail scanner's GET) and the
    browser's time zone."""

    zone = shown.browser_zone_field()


class SignInForm(PortalForm):
    email = email_field(check=False)
    password = current_password("Password")
    zone = shown.browser_zone_field()


class ResetRequestForm(PortalForm):
    email = email_field()


class ResetForm(PortalForm):
    password = new_password("New password")
    confirm = repeated_password("Repeat the new password")
    zone = shown.browser_zone_field()


def _signin_limit() -> str:
    return str(current_app.config["SIGNIN_RATE_LIMIT"])


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(_signin_limit, methods=["POST"])
def signup():
    form = SignUpForm()
    if form.validate_on_submit():
        email = form.email.data or ""
        try:
            token = service.start_signup(
                current_app.config["SECRET_KEY"],
                email,
                form.password.data or "",
                form.display_name.data or "",
            )
        except service.AccountError as exc:
            form.password.errors = [str(exc)]
        else:
            jobs.later(account_mail.SIGNUP, email, token)
            return render_template("accounts/signup_sent.html", email=email)
    return render_template("accounts/signup.html", form=form), 400 if form.errors else 200


@bp.route("/signup/confirm/<token>", methods=["GET", "POST"])
def signup_confirm(token: str):
    pending = service.read_signup(current_app.config["SECRET_KEY"], token)
    if pending is None:
        return render_template("accounts/signup_invalid.html"), 400
    form = ConfirmForm()
    if form.validate_on_submit():
        try:
            account = service.complete_signup(db.session, pending)
        except service.AccountError:
            # The link was used already (or the email got an account since): the holder of
            # the link owns the mailbox, so saying so reveals nothing to anyone else.
            return render_template("accounts/signup_done_already.html"), 409
        sign_in(account)
        shown.remember_browser_zone(account, form.zone.data)
        flash("Your account is ready and you are signed in.")
        return redirect(url_for("home.index"))
    return render_template("accounts/signup_confirm.html", form=form, email=pending.email)


@bp.route("/signin", methods=["GET", "POST"])
@limiter.limit(_signin_limit, methods=["POST"])
def signin():
    form = SignInForm()
    next_url = safe_next(request.args.get("next"), url_for("home.index"))
    ended = (session.pop(ENDED_KEY, None) or {}).get("why")
    draft_kept = DRAFT_KEY in session
    if form.validate_on_submit():
        email = form.email.data or ""
        pause = signin_guard.attempt(email)
        if pause is not None:
            page = render_template("accounts/signin_paused.html", pause=pause)
            return page, 429, {"Retry-After": str(pause.retry_after)}
        account = service.authenticate(db.session, email, form.password.data or "")
        if account is not None:
            signin_guard.succeeded(email)
            sign_in(account)
            shown.remember_browser_zone(account, form.zone.data)
            return redirect(next_url)
        form.password.errors = ["Email or password is incorrect."]
    status = 400 if form.errors else 200
    page = render_template(
        "accounts/signin.html", form=form, next_url=next_url, ended=ended, draft_kept=draft_kept
    )
    return page, status


@bp.post("/signout")
def signout():
    sign_out()
    flash("You are signed out.")
    return redirect(url_for("home.index"))


@bp.route("/reset", methods=["GET", "POST"])
@limiter.limit(_signin_limit, methods=["POST"])
def reset_request():
    form = ResetRequestForm()
    if form.validate_on_submit():
        # The lookup, the token and the mail all happen off the request path, so neither
        # the answer nor its timing tells whether the email has an account.
        jobs.later(account_mail.RESET, form.email.data or "")
        return render_template("accounts/reset_sent.html")
    status = 400 if form.errors else 200
    return render_template("accounts/reset_request.html", form=form), status


@bp.route("/reset/<token>", methods=["GET", "POST"])
def reset(token: str):
    if not service.reset_is_valid(db.session, token):
        return render_template("accounts/reset_invalid.html"), 400
    form = ResetForm()
    if form.validate_on_submit():
        try:
            account = service.complete_reset(db.session, token, form.password.data or "")
        except service.AccountError as exc:
            form.password.errors = [str(exc)]
        else:
            sign_in(account)
            shown.remember_browser_zone(account, form.zone.data)
            end_other_sessions(account)  # a copied cookie dies with the old password
            flash("Your password is changed and you are signed in. Every other session has ended.")
            return redirect(url_for("home.index"))
    status = 400 if form.errors else 200
    return render_template("accounts/reset.html", form=form), status


@bp.app_context_processor
def inject_account() -> dict[str, object]:
    return {"current_account": current_account()}
