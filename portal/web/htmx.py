"""htmx helpers: one template per URL, its fragments rendered alone for htmx requests."""

from __future__ import annotations

from typing import Any

from flask import Response, make_response, render_template
from jinja2_fragments.flask import render_block

from portal.extensions import htmx


def wants_fragment() -> bool:
    """An htmx swap asks for a fragment; normal, boosted and history-restore requests do not."""
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def render(template: str, block: str, **context: Any) -> Response:
    """The named block for an htmx swap, else the whole page; caches keep the two apart."""
    if wants_fragment():
        body = render_block(template, block, **context)
    else:
        body = render_template(template, **context)
    response = make_response(body)
    response.vary.add("HX-Request")
    return response


def render_html(body: str) -> Response:
    """An already rendered page or fragment, with the same caching rule as `render`."""
    response = make_response(body)
    response.vary.add("HX-Request")
    return response
