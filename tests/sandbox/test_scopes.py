"""SMART scopes as the FHIR API reads them: v1 and v2 permissions, granular restrictions."""

from __future__ import annotations

import pytest

from portal.sandbox.scopes import Access, covers, parse_scope, split_token, token_matches

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


@pytest.mark.parametrize(
    ("scope", "granted"),
    [
        ("patient/Observation.read", "rs"),
        ("patient/Observation.write", "cud"),
        ("patient/Observation.*", "cruds"),
        ("patient/Observation.rs", "rs"),
        ("patient/Observation.cruds", "cruds"),
        ("patient/Observation.c", "c"),
        ("user/Observation.s", "s"),
        ("system/Observation.rs", ""),  # not a patient-facing grant
        ("patient/Observation.sr", ""),  # v2 letters must be in order
        ("patient/Observation.read?category=x", ""),  # v1 takes no parameters
        ("openid fhirUser launch/patient", ""),
    ],
)
def test_permission_letters(scope, granted):
    access = Access(scope)
    assert {p for p in "cruds" if access.can("Observation", p)} == set(granted)


def test_a_type_scope_grants_only_that_type():
    access = Access("patient/Observation.rs")
    assert access.can("Observation", "r")
    assert not access.can("Condition", "r")


def test_wildcard_type_grants_every_type():
    access = Access("patient/*.rs")
    assert all(access.can(t, "s") for t in ("Patient", "Observation", "Practitioner"))
    assert not access.can("Observation", "c")


def test_unrestricted_grant_has_no_restrictions():
    assert Access("patient/Observation.rs").restrictions("Observation", "s") is None


def test_granular_grant_restricts_to_its_category():
    access = Access(f"patient/Observation.rs?category={LAB}")
    assert access.can("Observation", "s")
    assert access.restrictions("Observation", "s") == {
        "category": [("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")]
    }


def test_granular_grants_add_up_and_an_unrestricted_one_wins():
    two = Access(f"patient/Observation.rs?category={LAB} patient/Observation.rs?category=survey")
    assert two.restrictions("Observation", "s") == {
        "category": [
            ("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory"),
            (None, "survey"),
        ]
    }
    mixed = Access(f"patient/Observation.rs?category={LAB} patient/*.rs")
    assert mixed.restrictions("Observation", "s") is None


def test_restrictions_are_per_permission():
    access = Access(f"patient/Observation.s?category={LAB} patient/Observation.r")
    assert access.restrictions("Observation", "s")
    assert access.restrictions("Observation", "r") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("code", (None, "code")), ("sys|code", ("sys", "code")), ("|code", ("", "code"))],
)
def test_split_token(value, expected):
    assert split_token(value) == expected


def test_token_matches():
    values = [("http://loinc.org", "8302-2"), (None, "final")]
    assert token_matches([(None, "8302-2")], values)
    assert token_matches([("http://loinc.org", "8302-2")], values)
    assert not token_matches([("http://snomed.info/sct", "8302-2")], values)
    assert token_matches([("", "final")], values)


def test_parse_and_cover():
    parsed = parse_scope(f"patient/Observation.rs?category={LAB}")
    assert parsed is not None
    assert parsed.version == 2
    assert covers("patient/*.cruds", "patient/Observation.rs")
    assert not covers("patient/Observation.rs", "patient/Observation.c")
