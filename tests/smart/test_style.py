"""smart_style_url: only well-formed values become CSS."""

from __future__ import annotations

import httpx
from cryptography.fernet import Fernet

from portal.smart import style
from portal.smart.crypto import TokenCipher
from portal.smart.settings import SmartSettings


def test_recognised_values_become_custom_properties() -> None:
    css = style.style_css(
        {
            "color_background": "#edeae3",
            "color_highlight": "rgb(69, 117, 162)",
            "dim_border_radius": "6px",
            "font_family_body": "Georgia, 'Times New Roman', serif",
            "unknown_key": "#000",
        }
    )
    assert "--bg: #edeae3;" in css
    assert "--accent: rgb(69, 117, 162);" in css
    assert "--radius: 6px;" in css
    assert "--font-body: Georgia, 'Times New Roman', serif;" in css
    assert "unknown" not in css


def test_injection_attempts_are_dropped() -> None:
    css = style.style_css(
        {
            "color_background": "red; } body { background: url(https://evil.example/x)",
            "color_text": "#fff</style><script>",
            "font_family_body": "x;}@import url(//evil.example)",
            "dim_font_size": "expression(alert(1))",
        }
    )
    assert css == ""


def test_fetched_and_cached_and_failures_give_no_css() -> None:
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if request.url.path == "/style.json":
            return httpx.Response(200, json={"color_highlight": "#123456"})
        return httpx.Response(500)

    settings = SmartSettings(
        cipher=TokenCipher([Fernet.generate_key()]), transport=httpx.MockTransport(handle)
    )
    style.clear_cache()
    assert "--accent: #123456;" in style.css_for(
        "https://ehr.example/style.json", settings=settings
    )
    style.css_for("https://ehr.example/style.json", settings=settings)
    assert len(calls) == 1  # cached
    assert style.css_for("https://ehr.example/broken.json", settings=settings) == ""
    style.clear_cache()
