"""Fixtures of the web tests that need the live sandbox EHR (documents, write-back)."""

from tests.live import (  # noqa: F401  (fixtures are found by name)
    CLIENT_IDS,
    LiveEhr,
    _fresh_discovery,
    browser,
    client_key,
    factory,
    faults,
    live_ehr,
    portal,
    recorder,
    riverside,
    sleeps,
    smart,
    token_key,
)
