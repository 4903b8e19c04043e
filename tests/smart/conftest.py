"""Fixtures of the SMART client and sync tests: the live sandbox EHR and the portal's settings."""

from tests.live import (  # noqa: F401  (fixtures are found by name)
    _fresh_discovery,
    browser,
    client_key,
    ehr,
    factory,
    live_ehr,
    recorder,
    sleeps,
    smart,
    token_key,
)
