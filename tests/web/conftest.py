"""Fixtures of the web tests that need the live sandbox EHR (documents fetched from it)."""

from tests.live import (  # noqa: F401  (fixtures are found by name)
    _fresh_discovery,
    browser,
    client_key,
    factory,
    live_ehr,
    recorder,
    sleeps,
    smart,
    token_key,
)
