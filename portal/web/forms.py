"""The portal's form base: a form whose session ended while it was being filled comes back
with what the person had typed (see portal.web.auth.keep_draft), and the form library's own
messages are said in the portal's words (portal.web.form_words)."""

from __future__ import annotations

from typing import Any

from flask import flash, session
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto
from werkzeug.datastructures import MultiDict
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Email, EqualTo, Length

from portal.accounts import service
from portal.web.form_words import TOO_LONG, TOO_SHORT, TRANSLATIONS, PortalTranslations
from portal.web.sessions import DRAFT_KEY


class PortalForm(FlaskForm):
    """FlaskForm, plus drafts: `restored` says the fields hold a kept draft."""

    restored = False

    class Meta(FlaskForm.Meta):
        def get_translations(self, form: Any) -> PortalTranslations:
            return TRANSLATIONS

        def wrap_formdata(self, form: Any, formdata: Any) -> Any:
            if formdata is _Auto and not form.is_submitted():
                draft = _take_draft()
                if draft is not None:
                    form.restored = True
                    flash(
                        "We kept what you had typed before you were signed out. Check it and save."
                    )
                    return MultiDict(
                        [(name, value) for name, values in draft.items() for value in values]
                    )
            return super().wrap_formdata(form, formdata)


def _take_draft() -> dict[str, list[str]] | None:
    """This page's draft, for the person it belongs to (then it is gone)."""
    from flask import request

    draft = session.get(DRAFT_KEY)
    if not draft or draft.get("path") != request.path:
        return None
    if draft.get("account") != session.get("account_id"):
        return None
    session.pop(DRAFT_KEY, None)
    fields: dict[str, list[str]] = draft.get("fields") or {}
    return fields


def at_most(characters: int, message: str = TOO_LONG) -> Length:
    """Refuse more than `characters`, in the portal's words (%(max)d, %(length)d filled in)."""
    return Length(max=characters, message=message)


def email_field(label: str = "Email", *, check: bool = True) -> EmailField:
    """An email address; `check`: refuse what cannot be one (sign-in only looks it up)."""
    validators: list[Any] = [DataRequired("Enter your email address.")]
    if check:
        validators.append(Email("Enter an email address, like name@example.org."))
    validators.append(at_most(320, "An email address is at most %(max)d characters long."))
    return EmailField(label, validators=validators)


def new_password(label: str = "Password") -> PasswordField:
    """A password being chosen: long enough, and not longer than the portal hashes."""
    return PasswordField(
        f"{label} (at least {service.MIN_PASSWORD_LENGTH} characters)",
        validators=[
            DataRequired("Choose a password."),
            Length(min=service.MIN_PASSWORD_LENGTH, message=TOO_SHORT),
            at_most(service.MAX_PASSWORD_LENGTH),
        ],
    )


def repeated_password(label: str = "Repeat the password") -> PasswordField:
    """The chosen password again (the field before it is called `password`)."""
    return PasswordField(
        label,
        validators=[
            DataRequired("Type the password again."),
            EqualTo("password", message="The passwords differ."),
        ],
    )


def current_password(label: str) -> PasswordField:
    """A password the person already has."""
    return PasswordField(
        label,
        validators=[DataRequired("Enter your password."), at_most(service.MAX_PASSWORD_LENGTH)],
    )
