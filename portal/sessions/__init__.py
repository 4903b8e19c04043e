"""Browser sessions: server-side, with idle and absolute timeouts, ended together when needed.

`store` keeps them (database or Redis); `portal.web.sessions` ties them to Flask's requests.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from portal.models import SessionKind
from portal.sessions.store import SessionRecord


def new_session_id() -> str:
    """256 random bits for the cookie (ASVS asks for at least 128)."""
    return secrets.token_urlsafe(32)


def digest(session_id: str) -> str:
    """What the stores know a session by: the cookie value is never stored."""
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Timeouts:
    """How long a session lives: `idle` without activity, `absolute` from sign-in at most."""

    idle: timedelta = timedelta(minutes=15)
    absolute: timedelta = timedelta(hours=12)
    warning: timedelta = timedelta(minutes=1)  # shown this long before the idle end
    # Activity is written at most this often: the idle end is exact to within this.
    touch_interval: timedelta = timedelta(seconds=15)

    @classmethod
    def from_config(cls, config: dict[str, object]) -> Timeouts:
        def seconds(key: str, default: timedelta) -> timedelta:
            value = config.get(key)
            return timedelta(seconds=float(value)) if value is not None else default  # type: ignore[arg-type]

        base = cls()
        return cls(
            idle=seconds("SESSION_IDLE_TIMEOUT", base.idle),
            absolute=seconds("SESSION_ABSOLUTE_TIMEOUT", base.absolute),
            warning=seconds("SESSION_IDLE_WARNING", base.warning),
            touch_interval=seconds("SESSION_TOUCH_INTERVAL", base.touch_interval),
        )


@dataclass(frozen=True)
class SessionLine:
    """One of a person's sessions as the account page lists it."""

    browser: str
    last_seen: datetime
    started: datetime
    current: bool
    launch: bool  # opened by a clinic's EHR: that clinic only


def describe(record: SessionRecord, *, current: bool, now: datetime) -> SessionLine:
    return SessionLine(
        browser=browser_words(record.user_agent),
        last_seen=min(record.last_seen_at, now),
        started=record.created_at,
        current=current,
        launch=record.kind is SessionKind.LAUNCH,
    )


def browser_words(user_agent: str) -> str:
    """ "Chrome Mobile on Android", from the User-Agent (ua-parser's maintained rules)."""
    if not user_agent:
        return "Unknown browser"
    from ua_parser import parse  # its rules compile on first use: only the account page pays

    found = parse(user_agent[:300])
    browser = found.user_agent.family if found.user_agent else "Unknown browser"
    system = found.os.family if found.os else ""
    if browser == "Other":
        browser = "Unknown browser"
    return f"{browser} on {system}" if system and system != "Other" else browser
