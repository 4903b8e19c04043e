"""The mail behind the sign-up and reset pages, sent off the request path (portal.jobs).

Whether an email has an account decides only which mail goes out, never what the page says
or how long it takes. Links are built on PUBLIC_URL, never on the request's Host header (a
forged Host would otherwise put an attacker's site into a reset link).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app

from portal.accounts import service
from portal.db import transaction
from portal.extensions import db
from portal.jobs import job
from portal.notify.mail import Mailer, Message, build_mailer


def mailer(app: Flask) -> Mailer:
    """The app's mailer, built once from its configuration."""
    found: Mailer | None = app.extensions.get("mailer")
    if found is None:
        outbox = app.extensions.setdefault("mail_outbox", [])
        found = app.extensions.setdefault("mailer", build_mailer(app.config, outbox))
    return found


def external_url(app: Flask, endpoint: str, **values: Any) -> str:
    """An absolute URL under PUBLIC_URL, with or without a request."""
    public = urlsplit(str(app.config["PUBLIC_URL"]))
    adapter = app.url_map.bind(
        public.netloc, script_name=public.path or "/", url_scheme=public.scheme or "https"
    )
    return adapter.build(endpoint, values, force_external=True)


def _send(to: str, subject: str, template: str, **context: Any) -> None:
    # Straight from the environment: the page context processors need a request, and a
    # mail has no business with the browser's session.
    body = current_app.jinja_env.get_template(template).render(**context)
    mailer(current_app).send(Message(to=to, subject=subject, body=body))


SIGNUP, RESET = "mail.signup", "mail.reset"  # the jobs (portal.jobs) that send them


@job(SIGNUP, retries=4, delay=30, backoff=2)  # a mail server down for minutes
def send_signup_mail(email: str, token: str) -> None:
    """Mail the confirmation link; or, when the email has an account, tell its owner."""
    app = current_app
    with transaction(db.sessionmaker(app)) as session:
        exists = service.email_exists(session, email)
    if exists:
        _send(
            email,
            "Someone tried to create an account with your email",
            "accounts/mail/signup_exists.txt",
            signin_link=external_url(app, "accounts.signin"),
            reset_link=external_url(app, "accounts.reset_request"),
        )
    else:
        _send(
            email,
            "Finish creating your account",
            "accounts/mail/signup_confirm.txt",
            link=external_url(app, "accounts.signup_confirm", token=token),
        )


@job(RESET, retries=4, delay=30, backoff=2)
def send_reset_mail(email: str) -> None:
    """Store a reset token and mail its link, when the email has an account."""
    app = current_app
    with transaction(db.sessionmaker(app)) as session:
        token = service.start_reset(session, email)
    if token is not None:  # committed: the link works by the time the mail arrives
        _send(
            email,
            "Choose a new password",
            "accounts/mail/reset.txt",
            link=external_url(app, "accounts.reset", token=token),
        )
