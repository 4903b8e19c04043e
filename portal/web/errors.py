"""Error pages in the portal's own words (never the framework's, never an HTTP code)."""

from __future__ import annotations

from flask import Flask, render_template
from werkzeug.exceptions import HTTPException

# (title, what happened and what to do) by status; others get their class's: 400 or 500.
WORDS: dict[int, tuple[str, str]] = {
    400: (
        "That did not work",
        "The portal could not use what was sent. Go back, check it and try again.",
    ),
    401: ("Please sign in", "Sign in to see this page."),
    403: (
        "Not yours to see",
        "This page belongs to a record you have not been given access to.",
    ),
    404: (
        "Page not found",
        "There is nothing at this address. The link may be incomplete, or what it pointed to "
        "was removed.",
    ),
    405: (
        "That did not work",
        "This page cannot be used that way. Go back and use the buttons on the page.",
    ),
    413: (
        "Too much at once",
        "That was more than the portal accepts in one go, so nothing was saved. Go back, send "
        "less at a time (a shorter text, or a smaller file) and try again.",
    ),
    429: (
        "Please wait a minute",
        "That was tried many times in a short while, so the portal pauses it for a little while "
        "to keep accounts safe. Wait a minute, then try again.",
    ),
    500: (
        "Something went wrong on our side",
        "It was not something you did. Nothing was saved: try again in a moment.",
    ),
}


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[str, int]:
        code = exc.code or 500
        title, message = WORDS.get(code) or WORDS[400 if code < 500 else 500]
        return render_template("web/error.html", title=title, message=message), code
