"""Delivering password-reset links: to the console in development, to an outbox in tests.

A production deployment plugs a mail sender in here; until then the link is not sent anywhere
(and never logged: it is a credential).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger(__name__)


def send_reset_link(
    config: dict[str, Any], outbox: list[tuple[str, str]], email: str, link: str
) -> None:
    backend = config.get("MAIL_BACKEND")
    if backend == "outbox":
        outbox.append((email, link))
    elif backend == "console" and config.get("ENV") != "production":
        print(f"\n  Password reset link (demo mode, not emailed): {link}\n", file=sys.stderr)
    else:
        log.warning("password reset requested but no mail backend is configured")
