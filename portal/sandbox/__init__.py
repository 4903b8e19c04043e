"""Sandbox EHR: a SMART on FHIR authorization server and FHIR R4 API over Synthea patients.

Fenced off: it plays a hospital's EHR for the demo and the tests. The portal never imports
it (tests/test_fence.py checks); only the `portal demo` / `portal sandbox` CLI starts it.
"""
