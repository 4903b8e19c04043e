"""Sending mail: a `Mailer` with a console (development), outbox (tests) and SMTP (production)
backend, chosen by MAIL_BACKEND.

SMTP goes through the standard library's smtplib and email package: sending one plain-text
message over STARTTLS with a login is all the portal needs, and the libraries that would wrap
it (Flask-Mail, Flask-Mailman) do so with smtplib too. Mails are plain text and carry links,
never record contents; the console backend prints them whole, so it never runs in production
(portal.config refuses to start without a real transport).
"""

from __future__ import annotations

import smtplib
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

SMTP_TIMEOUT = 30.0  # seconds; a stuck server must not hold a background worker forever
BACKENDS = ("console", "outbox", "smtp")


@dataclass(frozen=True)
class Message:
    """One plain-text mail to one person."""

    to: str
    subject: str
    body: str


class Mailer(Protocol):
    """Delivers a message, or raises."""

    def send(self, message: Message) -> None: ...


class ConsoleMailer:
    """Development: the message is printed to stderr (the demo's log), not sent."""

    def send(self, message: Message) -> None:
        print(
            "\n----- mail (development: printed, not sent) -----\n"
            f"To: {message.to}\nSubject: {message.subject}\n\n{message.body}\n"
            "----- end of mail -----\n",
            file=sys.stderr,
            flush=True,
        )


class OutboxMailer:
    """Tests: messages are appended to a list."""

    def __init__(self, outbox: list[Message]) -> None:
        self.outbox = outbox

    def send(self, message: Message) -> None:
        self.outbox.append(message)


@dataclass(frozen=True)
class SmtpMailer:
    """Production: each message goes to the SMTP server in its own short connection."""

    host: str
    port: int
    sender: str
    user: str | None = None
    password: str | None = None
    starttls: bool = True

    def send(self, message: Message) -> None:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.to
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
        mail.set_content(message.body)
        with smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.user:
                smtp.login(self.user, self.password or "")
            smtp.send_message(mail)


def build_mailer(config: Mapping[str, Any], outbox: list[Message]) -> Mailer:
    """The mailer MAIL_BACKEND names (settings were checked when the app was configured)."""
    backend = config["MAIL_BACKEND"]
    if backend == "smtp":
        return SmtpMailer(
            host=str(config["MAIL_SMTP_HOST"]),
            port=int(config["MAIL_SMTP_PORT"]),
            sender=str(config["MAIL_FROM"]),
            user=config.get("MAIL_SMTP_USER") or None,
            password=config.get("MAIL_SMTP_PASSWORD") or None,
            starttls=bool(config["MAIL_SMTP_STARTTLS"]),
        )
    if backend == "outbox":
        return OutboxMailer(outbox)
    return ConsoleMailer()
