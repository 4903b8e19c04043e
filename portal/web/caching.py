"""What browsers and proxies may keep: nothing, unless a view says it is public.

Pages, fragments, forms, the EHR style and error pages of a signed-in person are health data
or name it; a shared computer's disk cache or a proxy must not keep them. So every response
is `no-store` except static files and views marked `@public(max_age=...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, current_app, request

F = TypeVar("F", bound=Callable[..., Any])


def public(max_age: int) -> Callable[[F], F]:
    """Mark a view whose answer is the same for everyone and may be cached for `max_age` s."""

    def mark(view: F) -> F:
        view.public_max_age = max_age  # type: ignore[attr-defined]  # read by cache_policy
        return view

    return mark


def cache_policy(response: Response) -> Response:
    """`no-store` unless the view is public or a static file; a view's own no-store is kept."""
    if request.endpoint == "static" and response.status_code < 400:
        return response
    view = current_app.view_functions.get(request.endpoint or "")
    max_age = getattr(view, "public_max_age", None)
    if max_age is not None and response.status_code < 400:
        response.headers["Cache-Control"] = f"public, max-age={max_age}"
    elif "no-store" not in response.headers.get("Cache-Control", ""):
        response.headers["Cache-Control"] = "no-store"
    return response
