"""The resource types the sandbox serves, and the search parameters each one understands."""

from __future__ import annotations

from dataclasses import dataclass

from portal.sandbox.outcome import FhirError

# Parameters every type accepts (besides the paging ones).
COMMON_PARAMS = ("_id", "_lastUpdated")


@dataclass(frozen=True)
class ResourceType:
    """One supported type: whether it lives in a patient's compartment and how it is searched."""

    name: str
    compartment: bool  # belongs to one patient; a patient token only ever sees its own
    tokens: tuple[str, ...] = ()  # token parameters (names of store.TOKEN_PARAMS)
    date: bool = False  # `date` against the indexed date_start/date_end
    subject: bool = False  # `subject` as another name for the patient reference
    creatable: bool = False

    @property
    def search_params(self) -> dict[str, str]:
        """Parameter name -> FHIR search parameter type, as the CapabilityStatement lists them."""
        params = {"_id": "token", "_lastUpdated": "date"}
        if self.compartment and self.name != "Patient":
            params["patient"] = "reference"
        if self.subject:
            params["subject"] = "reference"
        params.update({t: "token" for t in self.tokens})
        if self.date:
            params["date"] = "date"
        return params


def _patient_type(
    name: str, *tokens: str, subject: bool = False, creatable: bool = False
) -> ResourceType:
    return ResourceType(name, True, tokens, date=True, subject=subject, creatable=creatable)


def _shared_type(name: str, *tokens: str) -> ResourceType:
    return ResourceType(name, False, tokens)


_TYPES = (
    ResourceType("Patient", True, ("identifier",)),
    _patient_type(
        "AllergyIntolerance",
        *("clinical-status", "verification-status", "category", "code", "type", "identifier"),
        creatable=True,
    ),
    _patient_type(
        "Condition",
        *("category", "code", "clinical-status", "verification-status", "identifier"),
        subject=True,
        creatable=True,
    ),
    _patient_type(
        "MedicationRequest",
        *("status", "intent", "category", "code", "identifier"),
        subject=True,
        creatable=True,
    ),
    _patient_type(
        "MedicationStatement",
        "status",
        "category",
        "code",
        "identifier",
        subject=True,
        creatable=True,
    ),
    _shared_type("Medication", "code", "status", "identifier"),
    _patient_type("Immunization", "status", "code", "identifier", creatable=True),
    _patient_type(
        "Observation", "status", "category", "code", "identifier", subject=True, creatable=True
    ),
    _patient_type("DiagnosticReport", "status", "category", "code", "identifier", subject=True),
    _patient_type(
        "DocumentReference",
        "status",
        "category",
        "type",
        "identifier",
        subject=True,
        creatable=True,
    ),
    _patient_type("Encounter", "status", "type", "identifier", subject=True),
    _patient_type("Procedure", "status", "category", "code", "identifier", subject=True),
    _patient_type("CarePlan", "status", "intent", "category", "identifier", subject=True),
    _patient_type("CareTeam", "status", "category", "identifier", subject=True),
    _patient_type("Goal", "lifecycle-status", "category", "identifier", subject=True),
    _patient_type("Coverage", "status", "type", "identifier"),
    _shared_type("Practitioner", "identifier"),
    _shared_type("PractitionerRole", "code", "identifier"),
    _shared_type("Organization", "type", "identifier"),
    _shared_type("Location", "status", "type", "identifier"),
    _patient_type("Provenance", creatable=True),
    _patient_type("ImagingStudy", "status", "identifier", subject=True),
    _patient_type("Claim", "status", "identifier"),
    _patient_type("ExplanationOfBenefit", "status", "identifier"),
    _patient_type(
        "Communication", "status", "category", "identifier", subject=True, creatable=True
    ),
    _patient_type("Appointment", "status", "identifier", creatable=True),
    # Document content; in the compartment of the patient its securityContext belongs to.
    ResourceType("Binary", True),
)

TYPES: dict[str, ResourceType] = {t.name: t for t in _TYPES}


def resource_type(name: str) -> ResourceType:
    """The supported type called `name`, or a 404 OperationOutcome."""
    found = TYPES.get(name)
    if found is None:
        raise FhirError(404, f"Resource type {name!r} is not supported by this server")
    return found
