"""The record at a glance: what a patient wants to see first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from portal.phr import labs, vitals
from portal.phr.availability import SectionState, section_states
from portal.phr.lists import (
    Allergy,
    Immunization,
    Medication,
    Problem,
    allergies,
    latest_immunizations,
    medication_count,
    medications,
    problem_count,
    problems,
)
from portal.phr.records import Records

SHOWN = 8  # items per list before "see all"


@dataclass(frozen=True)
class Summary:
    problems: list[Problem]
    problem_count: int
    medications: list[Medication]
    medication_count: int
    allergies: list[Allergy]
    vitals: list[tuple[str, vitals.Reading]]
    labs: list[tuple[str, labs.LabResult]]
    immunizations: list[Immunization]
    immunization_count: int
    connected: bool  # at least one clinic connected
    sections: dict[str, SectionState]


def summary(records: Records, now: datetime) -> Summary:
    """Active problems, current medicines, allergies, latest vitals and results, vaccines."""
    latest_vaccines, doses = latest_immunizations(records, SHOWN)
    return Summary(
        problems=problems(records, "active", SHOWN),
        problem_count=problem_count(records, "active"),
        medications=medications(records, "current", SHOWN),
        medication_count=medication_count(records, "current"),
        allergies=allergies(records, "current"),
        vitals=vitals.latest_vitals(records),
        labs=labs.recent_results(records, SHOWN),
        immunizations=latest_vaccines,
        immunization_count=doses,
        connected=bool(records.ids),
        sections=section_states(
            records, ("problems", "medications", "allergies", "vitals", "labs", "immunizations")
        ),
    )
