"""Sign up, sign in, sign out, password reset."""

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
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length, Optional

from portal.accounts import service
from portal.accounts.mail import send_reset_link
from portal.extensions import db, limiter
from portal.web.auth import current_account, end_other_sessions, safe_next, sign_in, sign_out
from portal.web.forms import PortalForm
from portal.web.sessions import DRAFT_KEY, ENDED_KEY

bp = Blueprint("accounts", __name__)

PASSWORD = [DataRequired(), Length(min=service.MIN_PASSWORD_LENGTH, max=1024)]


class SignUpForm(PortalForm):
    display_name = StringField("Your name", validators=[Optional(), Length(max=200)])
    email = EmailField("Email", validators=[DataRequired(), Email(), Length(max=320)])
    password = PasswordField(
        f"Password (at least {service.MIN_PASSWORD_LENGTH} characters)", validators=PASSWORD
    )
    confirm = PasswordField(
        "Repeat the password",
        validators=[DataRequired(), EqualTo("password", message="The passwords differ.")],
    )


class SignInForm(PortalForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class ResetRequestForm(PortalForm):
    email = EmailField("Email", validators=[DataRequired(), Email(), Length(max=320)])


class ResetForm(PortalForm):
    password = PasswordField(
        f"New password (at least {service.MIN_PASSWORD_LENGTH} characters)", validators=PASSWORD
    )
    confirm = PasswordField(
        "Repeat the new password",
        validators=[DataRequired(), EqualTo("password", message="The passwords differ.")],
    )


def _signin_limit() -> str:
    return str(current_app.config["SIGNIN_RATE_LIMIT"])


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(_signin_limit, methods=["POST"])
def signup():
    form = SignUpForm()
    if form.validate_on_submit():
        try:
            account = service.create_account(
                db.session,
                form.email.data or "",
                form.password.data or "",
                form.display_name.data or "",
            )
        except service.AccountError as exc:
            form.email.errors = [str(exc)]
        else:
            sign_in(account)
            return redirect(url_for("home.index"))
    return render_template("accounts/signup.html", form=form), 400 if form.errors else 200


@bp.route("/signin", methods=["GET", "POST"])
@limiter.limit(_signin_limit, methods=["POST"])
def signin():
    form = SignInForm()
    next_url = safe_next(request.args.get("next"), url_for("home.index"))
    ended = (session.pop(ENDED_KEY, None) or {}).get("why")
    draft_kept = DRAFT_KEY in session
    if form.validate_on_submit():
        account = service.authenticate(db.session, form.email.data or "", form.password.data or "")
        if account is not None:
            sign_in(account)
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
        email = form.email.data or ""
        token = service.start_reset(db.session, email)
        if token is not None:
            link = url_for("accounts.reset", token=token, _external=True)
            outbox = current_app.extensions.setdefault("mail_outbox", [])
            send_reset_link(current_app.config, outbox, email, link)
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
            end_other_sessions(account)  # a copied cookie dies with the old password
            flash("Your password is changed and you are signed in. Every other session has ended.")
            return redirect(url_for("home.index"))
    status = 400 if form.errors else 200
    return render_template("accounts/reset.html", form=form), status


@bp.app_context_processor
def inject_account() -> dict[str, object]:
    return {"current_account": current_account()}
