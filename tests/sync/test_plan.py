"""Sync planning from the granted scope, and the checks a fetched resource must pass."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from portal.db import utcnow
from portal.smart.scopes import requested_scope
from portal.sync.plan import OBSERVATION_CATEGORIES, plan, referenced_types, remainder
from portal.sync.store import encode, prepare_page, problem, text_references

LAB = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
FULL = requested_scope(["permission-v2"], ehr_launch=False)


def keys(scope: str) -> list[str]:
    return [s.key for s in plan(scope, "p1")]


def test_full_grant_plans_every_section() -> None:
    searches = plan(FULL, "p1", page_size=50)
    by_key = {s.key: s for s in searches}
    assert by_key["Patient"].read_id == "p1"
    assert [k for k in by_key if k.startswith("Observation:")] == [
        *(f"Observation:{c}" for c in OBSERVATION_CATEGORIES),
        "Observation:total",  # counts them all, to catch Observations of other categories
    ]
    total = by_key["Observation:total"]
    # Should the count fail, the Observations of other categories are what may be missing.
    assert total.purpose == "total" and total.sections == ("observations",)
    assert total.label == "other observations"
    assert {("_summary", "count"), ("_count", "0"), ("patient", "p1")} <= set(total.params)
    for rtype in (
        "Condition",
        "AllergyIntolerance",
        "Immunization",
        "Encounter",
        "Procedure",
        "DiagnosticReport",
        "DocumentReference",
        "CarePlan",
        "Goal",
        "CareTeam",
        "Coverage",
        "MedicationRequest",
    ):
        assert ("patient", "p1") in by_key[rtype].params, rtype
        assert ("_count", "50") in by_key[rtype].params
    assert ("intent", "order,plan") in by_key["MedicationRequest"].params
    assert not {"Medication", "Practitioner", "Organization"} & set(by_key)  # by reference only
    lab = by_key["Observation:laboratory"]
    assert (
        "category",
        "http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
    ) in lab.params
    assert lab.sections == ("labs",)
    assert set(by_key["DiagnosticReport"].sections) == {"labs", "documents"}
    assert referenced_types(FULL) == {
        "Practitioner": "search",
        "Organization": "search",
        "Medication": "search",
    }


def test_long_chains_start_first() -> None:
    # Labs and vitals run to many pages; visits and reports cite clinicians to fetch next.
    first = ["Observation:laboratory", "Observation:vital-signs", "DiagnosticReport", "Encounter"]
    assert keys(FULL)[:4] == first
    assert sorted(keys(FULL)[4:]) == sorted(set(keys(FULL)) - set(first))


def test_v1_grants_plan_the_same() -> None:
    assert keys(requested_scope(["permission-v1"], ehr_launch=False)) == keys(FULL)


def test_category_restricted_grant_plans_only_those_categories() -> None:
    assert keys(f"openid patient/Patient.r {LAB}") == ["Observation:laboratory", "Patient"]
    conditions = "patient/Condition.rs?category=problem-list-item,health-concern"
    found = plan(conditions, "p1")
    assert [s.key for s in found] == ["Condition:health-concern", "Condition:problem-list-item"]
    assert ("category", "health-concern") in found[0].params


def test_types_not_granted_are_skipped() -> None:
    granted = " ".join(
        s for s in FULL.split() if s not in ("patient/Immunization.rs", "patient/Patient.rs")
    )
    planned = keys(granted)
    assert "Immunization" not in planned and "Patient" not in planned
    assert keys("openid fhirUser") == []
    assert keys("patient/Condition.r") == []  # read without search cannot list a patient's items
    assert keys("patient/Patient.s") == ["Patient"]  # search by _id instead of read


def test_resync_asks_only_for_changes() -> None:
    since = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    for search in [*plan(FULL, "p1", since=since), remainder("p1", since=since, page_size=9)]:
        if search.read_id is None:
            assert ("_lastUpdated", "gt2026-03-04T05:06:07.890123Z") in search.params


def check(resource: object, expected: str = "Observation", mode: str = "match"):
    types = ("Practitioner", "Organization")
    return prepare_page(
        [(resource, mode)], expected, "p1", types, "https://ehr.example/fhir", 1, utcnow()
    )


OBS = {
    "resourceType": "Observation",
    "id": "o1",
    "meta": {"versionId": "3", "lastUpdated": "2026-01-02T03:04:05Z"},
    "status": "final",
    "category": [{"coding": [{"system": "x", "code": "laboratory"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "1-8", "display": "Thing"}]},
    "subject": {"reference": "Patient/p1"},
    "performer": [
        {"reference": "Practitioner/dr1"},
        {"reference": "https://ehr.example/fhir/Organization/org1"},
        {"reference": "https://elsewhere.example/fhir/Organization/org2"},
    ],
    "effectiveDateTime": "2025-12-01",
}


def test_a_good_resource_becomes_a_row_with_query_columns() -> None:
    checked = check(OBS)
    (row,) = checked.rows
    assert json.loads(row["raw_json"]) == OBS  # stored as received
    assert (row["resource_type"], row["resource_id"], row["version_id"]) == (
        "Observation",
        "o1",
        "3",
    )
    assert row["last_updated"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (row["category"], row["status"], row["code"]) == ("labs", "final", "1-8")
    assert checked.quarantined == []
    assert checked.references == {("Practitioner", "dr1"), ("Organization", "org1")}


def test_bad_resources_are_quarantined_with_a_reason() -> None:
    cases = {
        "not a JSON object": ["a list"],
        "no resourceType": {"id": "x"},
        "a Condition in a Observation search": {**OBS, "resourceType": "Condition"},
        "no valid id": {**OBS, "id": "has spaces"},
        "not valid FHIR R4": {"resourceType": "Observation", "id": "m1", "code": 12345},
        "belongs to another patient": {**OBS, "subject": {"reference": "Patient/p2"}},
    }
    for reason, resource in cases.items():
        checked = check(resource)
        assert checked.rows == [], reason
        (bad,) = checked.quarantined
        assert bad["reason"].startswith(reason), (reason, bad["reason"])
        assert "12345" not in bad["reason"]  # reasons name elements, never values


def test_included_resources_of_other_types_are_kept() -> None:
    practitioner = {"resourceType": "Practitioner", "id": "dr1"}
    assert len(check(practitioner, mode="include").rows) == 1
    assert problem(practitioner, "Observation", "p1") is not None


def test_references_walk_nested_elements() -> None:
    nested = {"a": [{"b": {"reference": "Medication/m1"}}], "c": {"reference": "Medication/m 2"}}
    assert text_references(encode(nested), ("Medication",)) == {("Medication", "m1")}
