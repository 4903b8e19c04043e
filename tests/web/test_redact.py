"""Tokens in URLs stay out of the request logs: the redaction, and the development server's
log (a logging.Filter on the "werkzeug" logger, installed by create_app)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import httpx
import pytest
from flask import Flask
from werkzeug.serving import make_server

from portal.app import create_app
from portal.extensions import db
from portal.web.redact import TOKEN_PATHS, RedactFilter, redact_path, redact_text


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/reset/SECRET-TOKEN", "/reset/[redacted]"),
        ("/reset/SECRET-TOKEN?x=1", "/reset/[redacted]"),
        ("/reset/SECRET-TOKEN/more", "/reset/[redacted]/more"),
        ("/oauth/callback?code=abc&state=def", "/oauth/callback"),
        ("/records/labs?page=2", "/records/labs"),
        ("/reset", "/reset"),  # the request form carries no token
        ("/resetting/x", "/resetting/x"),
    ],
)
def test_redact_path(path: str, logged: str) -> None:
    assert redact_path(path) == logged


def test_every_token_path_is_redacted() -> None:
    assert "/reset/" in TOKEN_PATHS
    for prefix in TOKEN_PATHS:
        assert redact_path(prefix + "tok3n?x=1") == prefix + "[redacted]"


def test_redact_text_handles_request_lines_and_messages() -> None:
    line = '"GET /reset/SECRET-TOKEN?x=1 HTTP/1.1" 400 -'
    assert redact_text(line) == '"GET /reset/[redacted] HTTP/1.1" 400 -'
    assert (
        redact_text("Exception on /reset/SECRET [POST]") == "Exception on /reset/[redacted] [POST]"
    )
    assert redact_text("Is it done? yes") == "Is it done? yes"  # prose keeps its question marks


def test_the_filter_rewrites_a_real_record() -> None:
    record = logging.LogRecord(
        "werkzeug", logging.INFO, __file__, 1, '%s - - "%s" %s -', None, None
    )
    record.args = ("127.0.0.1", "GET /reset/SECRET-TOKEN?x=1 HTTP/1.1", "400")
    assert RedactFilter().filter(record)
    assert record.getMessage() == '127.0.0.1 - - "GET /reset/[redacted] HTTP/1.1" 400 -'


@pytest.fixture
def served(database_url: str) -> Iterator[Flask]:
    app = create_app({"DATABASE_URL": database_url})  # installs the filter
    yield app
    db.engine(app).dispose()


def test_the_development_server_log_has_neither_token_nor_query(
    served: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    """werkzeug's own request handler, as `flask run` serves."""
    server = make_server("127.0.0.1", 0, served, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            url = f"http://127.0.0.1:{server.server_port}/reset/SECRET-TOKEN?x=1"
            assert httpx.get(url).status_code == 400
            server.shutdown()
    finally:
        server.server_close()
        thread.join()
    logged = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("/reset/[redacted]" in m for m in logged), logged
    assert not any("SECRET-TOKEN" in m or "x=1" in m for m in logged), logged


def test_the_apps_exception_log_names_no_token(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app({"DATABASE_URL": database_url})  # not TESTING: exceptions are logged

    @app.get("/reset/<token>/broken")
    def broken(token: str) -> str:
        raise RuntimeError("a bug")

    try:
        assert app.test_client().get("/reset/SECRET-TOKEN/broken?x=1").status_code == 500
    finally:
        db.engine(app).dispose()
    logged = [r.getMessage() for r in caplog.records if r.name == app.logger.name]
    assert any("Exception on /reset/[redacted]/broken" in m for m in logged), logged
    assert not any("SECRET-TOKEN" in m for m in logged)


def test_every_route_that_takes_a_token_in_its_path_is_redacted(app: Flask) -> None:
    """A new route with a credential in its path cannot forget the request logs."""
    taking = [r.rule for r in app.url_map.iter_rules() if "token" in r.arguments]
    assert "/signup/confirm/<token>" in taking and "/reset/<token>" in taking
    for rule in taking:
        prefix = rule.split("<token>", 1)[0]
        assert prefix in TOKEN_PATHS, rule
        assert redact_path(prefix + "s3cret") == prefix + "[redacted]"
