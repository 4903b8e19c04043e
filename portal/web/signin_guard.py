"""Failed sign-ins per account: after SIGNIN_ACCOUNT_FAILURE_LIMIT, signing in to that email
pauses, whichever address the attempts come from.

The per-address limit (SIGNIN_RATE_LIMIT) alone lets an attacker spread guesses at one
account over many addresses, and, behind one proxy address, locks out everyone else with it;
this limit follows the account instead. Counted in the app limiter's storage (memory, or
Redis shared by every worker) through the `limits` API, under an HMAC of the normalised email,
so the storage never holds an email. It follows the app limiter's switch, RATELIMIT_ENABLED.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from dataclasses import dataclass

from flask import current_app
from limits import RateLimitItem, parse

from portal.accounts.service import normalise_email
from portal.extensions import limiter

NAMESPACE = "signin-failures"


@dataclass(frozen=True)
class Pause:
    """Signing in to this account is paused for about `minutes` more."""

    minutes: int
    retry_after: int  # seconds


def _limit() -> RateLimitItem:
    return parse(str(current_app.config["SIGNIN_ACCOUNT_FAILURE_LIMIT"]))


def _key(email: str) -> str:
    secret = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(secret, normalise_email(email).encode(), hashlib.sha256).hexdigest()


def _enabled() -> bool:
    return bool(current_app.config.get("RATELIMIT_ENABLED", True))


def attempt(email: str) -> Pause | None:
    """Count a sign-in attempt for `email`; a Pause when the account's limit is used up.

    Counting before the password is checked keeps concurrent guesses from slipping past the
    limit, and a paused account costs no password hashing; a success clears the count again.
    """
    if not _enabled():
        return None
    limit, key = _limit(), _key(email)
    if limiter.limiter.hit(limit, NAMESPACE, key):
        return None
    reset_at = limiter.limiter.get_window_stats(limit, NAMESPACE, key).reset_time
    seconds = max(1, math.ceil(reset_at - time.time()))
    return Pause(minutes=max(1, math.ceil(seconds / 60)), retry_after=seconds)


def succeeded(email: str) -> None:
    """The right password: earlier failures for this account no longer count."""
    if _enabled():
        limiter.limiter.clear(_limit(), NAMESPACE, _key(email))
