"""Where a FHIR resource belongs in the patient's record, and the columns pages query by.

The categories are the portal's own, in plain words; they map to the records pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# LOINC codes of measurements people take themselves that are not vital signs by category.
MEASUREMENT_CODES = frozenset({"41653-7", "72514-3", "41950-7"})
OBSERVATION_CATEGORIES = {
    "laboratory": "labs",
    "vital-signs": "vitals",
    "social-history": "social",
    "survey": "surveys",
}
TYPE_CATEGORIES = {
    "Patient": "patient",
    "AllergyIntolerance": "allergies",
    "MedicationRequest": "medications",
    "MedicationStatement": "medications",
    "Medication": "medication-details",
    "Immunization": "immunizations",
    "DiagnosticReport": "reports",
    "DocumentReference": "documents",
    "Encounter": "visits",
    "Procedure": "procedures",
    "CarePlan": "careplans",
    "Goal": "goals",
    "CareTeam": "careteam",
    "Coverage": "coverage",
    "Practitioner": "directory",
    "PractitionerRole": "directory",
    "Organization": "directory",
    "Location": "directory",
    "Provenance": "provenance",
    "ImagingStudy": "imaging",
    "Claim": "claims",
    "ExplanationOfBenefit": "claims",
}
# Code-bearing elements, in order of preference.
CODE_ELEMENTS = ("code", "vaccineCode", "medicationCodeableConcept", "type", "class")
# Date elements, in order of preference: the moment the fact is about.
DATE_ELEMENTS = (
    "effectiveDateTime",
    "effectivePeriod",
    "effectiveInstant",
    "onsetDateTime",
    "onsetPeriod",
    "performedDateTime",
    "performedPeriod",
    "occurrenceDateTime",
    "authoredOn",
    "recordedDate",
    "period",
    "date",
    "issued",
    "startDate",
    "started",
    "billablePeriod",
    "created",
    "birthDate",
)
PREFERRED_SYSTEMS = (
    "http://loinc.org",
    "http://snomed.info/sct",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
    "http://hl7.org/fhir/sid/cvx",
)


@dataclass(frozen=True)
class Classified:
    """The query columns of a stored resource."""

    category: str
    status: str | None
    code_system: str | None
    code: str | None
    display: str | None
    effective_at: datetime | None
    encounter_ref: str | None = None  # the visit it was made at: `encounter.reference`


def classify(resource: dict[str, Any]) -> Classified:
    """Category, status, main code and date of a resource (missing parts are None)."""
    system, code, display = main_code(resource)
    return Classified(
        category=category_of(resource),
        status=status_of(resource),
        code_system=system,
        code=code,
        display=display,
        effective_at=effective_of(resource),
        encounter_ref=encounter_of(resource),
    )


def encounter_of(resource: dict[str, Any]) -> str | None:
    """The reference to the visit a record was made at, as sent (None when too long to
    index: 255 characters)."""
    encounter = resource.get("encounter")
    ref = encounter.get("reference") if isinstance(encounter, dict) else None
    return ref if isinstance(ref, str) and len(ref) <= 255 else None


def category_of(resource: dict[str, Any]) -> str:
    rtype = resource.get("resourceType", "")
    if rtype == "Observation":
        if set(codes_of(resource.get("code"))) & MEASUREMENT_CODES:
            return "vitals"  # taken at home (glucometer, pain score, steps): with the vitals
        for code in codes_of(resource.get("category")):
            if code in OBSERVATION_CATEGORIES:
                return OBSERVATION_CATEGORIES[code]
        return "observations"
    if rtype == "Condition":
        cats = set(codes_of(resource.get("category")))
        if "encounter-diagnosis" in cats and not cats & {"problem-list-item", "health-concern"}:
            return "diagnoses"
        return "problems"
    return TYPE_CATEGORIES.get(rtype, "other")


def status_of(resource: dict[str, Any]) -> str | None:
    """The status a patient cares about; `entered-in-error` wins so such records can be hidden."""
    verification = codes_of(resource.get("verificationStatus"))
    if "entered-in-error" in verification or resource.get("status") == "entered-in-error":
        return "entered-in-error"
    clinical = codes_of(resource.get("clinicalStatus"))
    if clinical:
        return clinical[0]
    status = resource.get("status")
    return status if isinstance(status, str) else None


def main_code(resource: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(system, code, display) of the resource's main code; display falls back to text."""
    for element in CODE_ELEMENTS:
        value = resource.get(element)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, dict) and (value.get("coding") or value.get("text")):
            codings = [c for c in value.get("coding", []) if isinstance(c, dict)]
            best = sorted(
                codings,
                key=lambda c: (
                    PREFERRED_SYSTEMS.index(c.get("system"))
                    if c.get("system") in PREFERRED_SYSTEMS
                    else len(PREFERRED_SYSTEMS)
                ),
            )
            chosen = best[0] if best else {}
            display = value.get("text") or chosen.get("display")
            return chosen.get("system"), chosen.get("code"), _clip(display)
        if isinstance(value, dict) and "code" in value and isinstance(value["code"], str):
            return value.get("system"), value["code"], _clip(value.get("display"))
    return None, None, None


def effective_of(resource: dict[str, Any]) -> datetime | None:
    for element in DATE_ELEMENTS:
        value = resource.get(element)
        if isinstance(value, dict):
            value = value.get("start") or value.get("end")
        if isinstance(value, str):
            parsed = parse_datetime(value)
            if parsed is not None:
                return parsed
    return None


def parse_datetime(value: str) -> datetime | None:
    """A FHIR date or dateTime as an aware UTC datetime (partial dates at their start)."""
    value = value.strip()
    try:
        if len(value) == 4:
            return datetime(int(value), 1, 1, tzinfo=UTC)
        if len(value) == 7:
            return datetime(int(value[:4]), int(value[5:7]), 1, tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def codes_of(value: Any) -> list[str]:
    """Codes of a CodeableConcept, a list of them, or a plain code string."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [c for v in value for c in codes_of(v)]
    if isinstance(value, dict):
        return [c["code"] for c in value.get("coding", []) if isinstance(c, dict) and c.get("code")]
    return []


def _clip(text: Any) -> str | None:
    return str(text)[:500] if text else None
