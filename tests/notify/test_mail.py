"""Mail backends: the SMTP transport against a real local SMTP server (aiosmtpd), the console
and outbox backends, and the whole reset mail going through SMTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword
from flask import Flask

from portal.accounts import service
from portal.app import create_app
from portal.extensions import db
from portal.notify.mail import ConsoleMailer, Message, OutboxMailer, SmtpMailer, build_mailer


@dataclass
class Received:
    envelopes: list[Envelope] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(
        self, _server: Any, _session: Any, _envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            login = (data.login.decode(), data.password.decode())
            self.logins.append(login)
            return AuthResult(success=login == ("portal", "mail-secret"))
        return AuthResult(success=False, handled=False)

    def parsed(self, index: int = -1) -> EmailMessage:
        content = self.envelopes[index].original_content
        assert isinstance(content, bytes)
        return message_from_bytes(content)


@dataclass
class SmtpServer:
    host: str
    port: int
    received: Received


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on a free loopback port (no TLS: the test has no certificate)."""
    received = Received()
    controller = Controller(
        received,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=received.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", controller.port, received)
    finally:
        controller.stop()


def test_smtp_delivers_a_plain_text_message(smtp_server: SmtpServer) -> None:
    mailer = SmtpMailer(
        host=smtp_server.host,
        port=smtp_server.port,
        sender="My Health Record <portal@example.org>",
        user="portal",
        password="mail-secret",
        starttls=False,
    )
    link = "https://portal.example.org/reset/abc123"
    mailer.send(Message("ana@example.org", "Choose a new password", f"Open this link:\n{link}\n"))
    [envelope] = smtp_server.received.envelopes
    assert envelope.rcpt_tos == ["ana@example.org"]
    assert envelope.mail_from == "portal@example.org"
    assert smtp_server.received.logins == [("portal", "mail-secret")]
    mail = smtp_server.received.parsed()
    assert mail["To"] == "ana@example.org" and mail["Subject"] == "Choose a new password"
    assert mail["Auto-Submitted"] == "auto-generated" and mail["Message-ID"]
    assert mail.get_content_type() == "text/plain"
    assert link in mail.get_payload(decode=True).decode()


def test_a_password_reset_mail_arrives_over_smtp(
    smtp_server: SmtpServer, app: Flask, database_url: str
) -> None:
    smtp_app = create_app(
        {
            **app.config,
            "MAIL_BACKEND": "smtp",
            "MAIL_SMTP_HOST": smtp_server.host,
            "MAIL_SMTP_PORT": smtp_server.port,
            "MAIL_SMTP_USER": "portal",
            "MAIL_SMTP_PASSWORD": "mail-secret",
            "MAIL_SMTP_STARTTLS": False,
            "MAIL_FROM": "portal@example.org",
            "PUBLIC_URL": "https://portal.example.org",
        }
    )
    try:
        with smtp_app.app_context():
            service.create_account(db.session, "ana@example.org", "correct horse battery")
            db.session.commit()
        client = smtp_app.test_client()
        assert client.post("/reset", data={"email": "nobody@example.org"}).status_code == 200
        assert client.post("/reset", data={"email": "ana@example.org"}).status_code == 200
        [envelope] = smtp_server.received.envelopes  # none for the unknown email
        assert envelope.rcpt_tos == ["ana@example.org"]
        body = smtp_server.received.parsed().get_payload(decode=True).decode()
        assert "https://portal.example.org/reset/" in body
        assert "correct horse battery" not in body
    finally:
        db.engine(smtp_app).dispose()


def test_console_prints_to_stderr_and_outbox_keeps(capsys: pytest.CaptureFixture[str]) -> None:
    message = Message("ana@example.org", "Hello", "Open https://portal.example.org/x")
    ConsoleMailer().send(message)
    err = capsys.readouterr().err
    assert "To: ana@example.org" in err and "https://portal.example.org/x" in err
    kept: list[Message] = []
    OutboxMailer(kept).send(message)
    assert kept == [message]


def test_the_backend_is_chosen_by_configuration() -> None:
    kept: list[Message] = []
    base = {"MAIL_SMTP_PORT": 587, "MAIL_SMTP_STARTTLS": True, "MAIL_FROM": "p@example.org"}
    assert isinstance(build_mailer({**base, "MAIL_BACKEND": "console"}, kept), ConsoleMailer)
    assert isinstance(build_mailer({**base, "MAIL_BACKEND": "outbox"}, kept), OutboxMailer)
    smtp = build_mailer({**base, "MAIL_BACKEND": "smtp", "MAIL_SMTP_HOST": "mx.example"}, kept)
    assert isinstance(smtp, SmtpMailer) and smtp.host == "mx.example" and smtp.starttls
