"""Scope requests follow the EHR's capabilities; granted scopes decide what can be shown."""

from __future__ import annotations

from portal.smart.scopes import (
    WRITE_TYPES,
    can_create,
    granted_sections,
    missing_sections,
    requested_scope,
)

LAB = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


def test_v2_requested_when_advertised() -> None:
    scope = requested_scope(["permission-v2", "permission-v1"], ehr_launch=False).split()
    assert "patient/Observation.rs" in scope
    assert "patient/Observation.read" not in scope
    assert {"openid", "fhirUser", "launch/patient", "offline_access"} <= set(scope)
    assert "launch" not in scope


def test_v1_when_only_v1_advertised_and_launch_scopes_for_ehr_launch() -> None:
    scope = requested_scope(["permission-v1"], ehr_launch=True).split()
    assert "patient/Condition.read" in scope
    assert not any(s.endswith(".rs") for s in scope)
    assert {"launch", "online_access"} <= set(scope)
    assert "offline_access" not in scope


def test_only_used_types_are_requested() -> None:
    scope = requested_scope(["permission-v2"], ehr_launch=False)
    assert "patient/*" not in scope
    created = {s.split("/")[1].removesuffix(".c") for s in scope.split() if s.endswith(".c")}
    assert created == set(WRITE_TYPES)  # create only for the patient's own entries' types
    v1 = requested_scope(["permission-v1"], ehr_launch=True)
    assert "patient/Observation.write" in v1 and "patient/Observation.read" in v1
    assert ".c " not in v1 + " "


def test_create_grants_v1_v2_and_categories() -> None:
    assert can_create("patient/Observation.c", "Observation")
    assert can_create("patient/Observation.crs", "Observation", "vital-signs")
    assert can_create("patient/Observation.write", "Observation")
    assert can_create("patient/*.cruds", "Condition")
    assert not can_create("patient/Observation.rs", "Observation")
    assert not can_create("patient/Observation.read", "Observation")
    assert not can_create("patient/Condition.c", "Observation")
    limited = "patient/Observation.c?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
    assert can_create(limited, "Observation", "vital-signs")
    assert not can_create(limited, "Observation", "laboratory")


def test_everything_granted() -> None:
    assert missing_sections("openid patient/*.rs") == set()
    assert missing_sections("patient/*.read") == set()


def test_refused_immunizations_are_missing() -> None:
    full = requested_scope(["permission-v2"], ehr_launch=False)
    granted = " ".join(s for s in full.split() if s != "patient/Immunization.rs")
    assert missing_sections(granted) == {"immunizations"}


def test_category_granular_grant_covers_only_that_category() -> None:
    sections = granted_sections(f"openid {LAB}")
    assert "labs" in sections
    assert "vitals" not in sections and "social" not in sections


def test_read_without_search_does_not_fill_a_section() -> None:
    assert "problems" not in granted_sections("patient/Condition.r")
    assert "problems" in granted_sections("patient/Condition.s")


def test_nonsense_scopes_grant_nothing() -> None:
    assert granted_sections("patient/Observation.xyz system/ patient/.rs launch") == set()
