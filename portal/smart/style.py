"""`smart_style_url`: the launching EHR's look (colours, fonts, radius) as portal CSS.

The style document is fetched server-side, every value is checked against a strict pattern
(nothing else reaches the stylesheet), and the result is served as a same-origin CSS file,
so the CSP needs no inline styles and no third-party origin.
"""

from __future__ import annotations

import logging
import re
import threading
import time

from portal.smart.discovery import get_json
from portal.smart.errors import SmartError
from portal.smart.settings import SmartSettings, resolve

log = logging.getLogger(__name__)

_COLOR = re.compile(r"^(#[0-9a-fA-F]{3,8}|rgba?\(\s*[\d.]+%?(\s*,\s*[\d.]+%?){2,3}\s*\))$")
_DIM = re.compile(r"^\d{1,3}(\.\d{1,3})?(px|em|rem)$")
_FONT = re.compile(r"^[A-Za-z0-9 ,'\"-]{1,120}$")
# SMART style key -> (CSS custom property, pattern)
STYLE_KEYS = {
    "color_background": ("--bg", _COLOR),
    "color_text": ("--fg", _COLOR),
    "color_highlight": ("--accent", _COLOR),
    "color_error": ("--danger", _COLOR),
    "color_success": ("--success", _COLOR),
    "dim_border_radius": ("--radius", _DIM),
    "dim_font_size": ("--font-size", _DIM),
    "dim_spacing_size": ("--spacing", _DIM),
    "font_family_body": ("--font-body", _FONT),
    "font_family_heading": ("--font-heading", _FONT),
}
MAX_AGE = 3600.0
_cache: dict[str, tuple[float, str]] = {}
_lock = threading.Lock()


def style_css(style: dict[str, object]) -> str:
    """CSS custom properties for the recognised, well-formed keys of a SMART style document."""
    lines = []
    for key, (prop, pattern) in STYLE_KEYS.items():
        value = style.get(key)
        if isinstance(value, str) and pattern.match(value.strip()):
            lines.append(f"  {prop}: {value.strip()};")
    if not lines:
        return ""
    return ":root {\n" + "\n".join(lines) + "\n}\n"


def css_for(url: str, *, settings: SmartSettings | None = None) -> str:
    """The CSS of a style URL (cached); empty when it cannot be fetched or says nothing usable."""
    now = time.monotonic()
    with _lock:
        cached = _cache.get(url)
    if cached and cached[0] > now:
        return cached[1]
    try:
        css = style_css(get_json(url, resolve(settings)))
    except SmartError as exc:
        log.info("smart_style_url not applied: %s", type(exc).__name__)
        css = ""
    with _lock:
        _cache[url] = (now + MAX_AGE, css)
    return css


def clear_cache() -> None:
    with _lock:
        _cache.clear()
