"""Keeping secrets that travel in URLs out of request logs (werkzeug, gunicorn, Flask's own).

Query strings carry OAuth codes, states and launch ids; some paths carry a token themselves
(the password-reset link). Every request log line goes through `redact_path` or `redact_text`.
"""

from __future__ import annotations

import logging
import re

from flask import Flask

# Path prefixes whose next segment is a secret. Add here every route that puts a token in
# its path (e.g. a future invitation or sharing link): the logs of every server follow.
TOKEN_PATHS: tuple[str, ...] = ("/reset/", "/signup/confirm/")
REDACTED = "[redacted]"

_TOKEN_SEGMENT = re.compile(
    "(" + "|".join(re.escape(prefix) for prefix in TOKEN_PATHS) + r")[^\s/?#\"']+"
)
# A query string right after a path: "/x?code=..." (not a question mark in prose).
_QUERY = re.compile(r"(/[^\s?\"']*)\?[^\s\"']*")


def redact_path(path: str) -> str:
    """The path without its query string, and with token segments replaced."""
    return _TOKEN_SEGMENT.sub(r"\1" + REDACTED, path.split("?", 1)[0])


def redact_text(text: str) -> str:
    """A log message with every path in it redacted (request lines, "Exception on /...")."""
    return _TOKEN_SEGMENT.sub(r"\1" + REDACTED, _QUERY.sub(r"\1", text))


class RedactFilter(logging.Filter):
    """Rewrites a record's message when it names a token-bearing path or a query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install(app: Flask) -> None:
    """Redact the development server's request log and the app's own log (exceptions name the
    path); idempotent, as tests build many apps."""
    for logger in (logging.getLogger("werkzeug"), app.logger):
        if not any(isinstance(f, RedactFilter) for f in logger.filters):
            logger.addFilter(RedactFilter())
