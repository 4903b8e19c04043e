"""The patient's own entries as US Core-shaped FHIR R4 resources, checked before they are kept.

Each entry carries a business identifier (`urn:ietf:rfc:3986` + a `urn:uuid:`) that stays the
same across edits and EHRs: it is what `If-None-Exist` matches when an entry is sent to a
clinic, so a retry never makes a second copy. Every version gets a Provenance naming the
patient as author.
"""

from __future__ import annotations

import base64
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fhirclient.models.fhirabstractbase import FHIRValidationError
from fhirclient.models.fhirelementfactory import FHIRElementFactory

from portal.fhirjson import FhirDecimal
from portal.phr.entries.catalog import LOINC, OBSERVATION_CATEGORY, UCUM, Concept, Measure

IDENTIFIER_SYSTEM = "urn:ietf:rfc:3986"
PROVENANCE_AGENT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
SELF_REPORTED = {  # meta.tag on every entry: who said it
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "PATAST",
    "display": "patient asserted",
}


class InvalidResource(ValueError):
    """A resource the portal built is not valid FHIR R4: a bug, never the patient's fault."""


def instant(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def quantity(value: Decimal, unit_code: str, unit_label: str) -> dict[str, Any]:
    # The digits typed stay ("70.50" is stored as 70.50: portal.fhirjson writes them).
    number: int | float = (
        int(value) if value == value.to_integral_value() else FhirDecimal(str(value))
    )
    return {"value": number, "unit": unit_label, "system": UCUM, "code": unit_code}


def measurement(
    measure: Measure,
    values: tuple[Decimal, ...],
    unit_code: str,
    *,
    resource_id: str,
    identifier: str,
    patient: dict[str, str],
    when: datetime,
    note: str | None,
) -> dict[str, Any]:
    """An Observation of a vital sign or measurement the patient took themselves."""
    unit = measure.unit(unit_code)
    assert unit is not None
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id,
        "meta": {"tag": [SELF_REPORTED]},
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": identifier}],
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": measure.category}]}],
        "code": {
            "coding": [{"system": LOINC, "code": measure.loinc, "display": measure.display}],
            "text": measure.name,
        },
        "subject": patient,
        "effectiveDateTime": instant(when),
        "performer": [patient],
    }
    if measure.components:
        resource["component"] = [
            {
                "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                "valueQuantity": quantity(value, unit.code, unit.label),
            }
            for (code, display, _label), value in zip(measure.components, values, strict=True)
        ]
    else:
        resource["valueQuantity"] = quantity(values[0], unit.code, unit.label)
    if note:
        resource["note"] = [{"text": note}]
    return resource


def provenance(
    target: dict[str, Any], version: int, patient: dict[str, str], when: datetime
) -> dict[str, Any]:
    """Who wrote this version of an entry: the patient, through the portal."""
    return {
        "resourceType": "Provenance",
        "id": f"{target['id']}-v{version}",
        "target": [{"reference": f"{target['resourceType']}/{target['id']}/_history/{version}"}],
        "recorded": instant(when),
        "agent": [
            {
                "type": {
                    "coding": [{"system": PROVENANCE_AGENT, "code": "author", "display": "Author"}]
                },
                "who": patient,
            }
        ],
    }


def check(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource, once the fhirclient models (strict) accept it."""
    try:
        FHIRElementFactory.instantiate(resource["resourceType"], resource)
    except (FHIRValidationError, TypeError, ValueError, KeyError) as exc:
        raise InvalidResource(f"{resource.get('resourceType')}: {exc}") from None
    return resource


# ---- coded entries ----------------------------------------------------------------------

CLINICAL = {
    "Condition": "http://terminology.hl7.org/CodeSystem/condition-clinical",
    "AllergyIntolerance": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
}
VERIFICATION = {
    "Condition": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
    "AllergyIntolerance": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
}
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
US_CORE_CONDITION_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/condition-category"
SEVERITY = {  # SNOMED qualifiers for Condition.severity
    "mild": ("255604002", "Mild"),
    "moderate": ("6736007", "Moderate"),
    "severe": ("24484000", "Severe"),
}
DOCUMENT_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"


def concept(found: Concept | None, text: str) -> dict[str, Any]:
    """A CodeableConcept: the listed code when the patient picked one, always their words."""
    value: dict[str, Any] = {"text": text}
    if found is not None:
        value["coding"] = [{"system": found.system, "code": found.code, "display": found.display}]
    return value


def _status(system: dict[str, str], rtype: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system[rtype], "code": code}]}


def _base(rtype: str, resource_id: str, identifier: str) -> dict[str, Any]:
    return {
        "resourceType": rtype,
        "id": resource_id,
        "meta": {"tag": [SELF_REPORTED]},
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": identifier}],
    }


def _note(resource: dict[str, Any], note: str | None) -> dict[str, Any]:
    if note:
        resource["note"] = [{"text": note}]
    return resource


def medication(
    what: dict[str, Any],
    *,
    taking: bool,
    dose: str | None,
    frequency: str | None,
    started: date | None,
    resource_id: str,
    identifier: str,
    patient: dict[str, str],
    recorded: datetime,
    note: str | None,
) -> dict[str, Any]:
    """A medicine the patient takes (or took): MedicationRequest intent=plan, reported by them."""
    resource = _base("MedicationRequest", resource_id, identifier)
    resource |= {
        "status": "active" if taking else "stopped",
        "intent": "plan",
        "reportedReference": patient,
        "medicationCodeableConcept": what,
        "subject": patient,
        "authoredOn": started.isoformat() if started else instant(recorded),
        "requester": patient,
    }
    instructions = " ".join(p for p in (dose, frequency) if p)
    if instructions:
        dosage: dict[str, Any] = {"text": instructions}
        if frequency:
            dosage["timing"] = {"code": {"text": frequency}}
        resource["dosageInstruction"] = [dosage]
    return _note(resource, note)


def condition(
    what: dict[str, Any],
    *,
    category: str,  # problem-list-item | health-concern (a symptom)
    active: bool,
    onset: date | datetime | None,
    ended: date | None,
    severity: str | None,
    resource_id: str,
    identifier: str,
    patient: dict[str, str],
    recorded: datetime,
    note: str | None,
) -> dict[str, Any]:
    """A condition or symptom the patient reports: asserter and recorder are the patient."""
    system = CONDITION_CATEGORY if category == "problem-list-item" else US_CORE_CONDITION_CATEGORY
    resource = _base("Condition", resource_id, identifier)
    resource |= {
        "clinicalStatus": _status(CLINICAL, "Condition", "active" if active else "resolved"),
        "verificationStatus": _status(VERIFICATION, "Condition", "unconfirmed"),
        "category": [{"coding": [{"system": system, "code": category}]}],
        "code": what,
        "subject": patient,
        "recordedDate": instant(recorded),
        "recorder": patient,
        "asserter": patient,
    }
    if onset is not None:
        resource["onsetDateTime"] = (
            instant(onset) if isinstance(onset, datetime) else onset.isoformat()
        )
    if ended is not None and not active:
        resource["abatementDateTime"] = ended.isoformat()
    if severity in SEVERITY:
        code, display = SEVERITY[severity]
        resource["severity"] = {
            "coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]
        }
    return _note(resource, note)


def allergy(
    what: dict[str, Any],
    *,
    kind: str,  # allergy | intolerance
    category: str | None,  # food | medication | environment | biologic
    active: bool,
    reaction: str | None,
    severity: str | None,  # mild | moderate | severe
    onset: date | None,
    resource_id: str,
    identifier: str,
    patient: dict[str, str],
    recorded: datetime,
    note: str | None,
) -> dict[str, Any]:
    """An allergy or intolerance the patient reports: recorder and asserter are the patient."""
    resource = _base("AllergyIntolerance", resource_id, identifier)
    resource |= {
        "clinicalStatus": _status(
            CLINICAL, "AllergyIntolerance", "active" if active else "resolved"
        ),
        "verificationStatus": _status(VERIFICATION, "AllergyIntolerance", "unconfirmed"),
        "type": kind,
        "code": what,
        "patient": patient,
        "recordedDate": instant(recorded),
        "recorder": patient,
        "asserter": patient,
    }
    if category:
        resource["category"] = [category]
    if onset is not None:
        resource["onsetDateTime"] = onset.isoformat()
    if reaction:
        entry: dict[str, Any] = {"manifestation": [{"text": reaction}]}
        if severity:
            entry["severity"] = severity
        resource["reaction"] = [entry]
    return _note(resource, note)


def immunization(
    what: dict[str, Any],
    *,
    given: date,
    place: str | None,
    resource_id: str,
    identifier: str,
    patient: dict[str, str],
    recorded: datetime,
    note: str | None,
) -> dict[str, Any]:
    """A vaccine received elsewhere, as the patient recalls it (primarySource false)."""
    resource = _base("Immunization", resource_id, identifier)
    resource |= {
        "status": "completed",
        "vaccineCode": what,
        "patient": patient,
        "occurrenceDateTime": given.isoformat(),
        "recorded": instant(recorded),
        "primarySource": False,
        "reportOrigin": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/immunization-origin",
                    "code": "recall",
                    "display": "Parental/patient recall",
                }
            ]
        },
    }
    notes = [n for n in (f"Given at {place}" if place else None, note) if n]
    return _note(resource, " — ".join(notes) or None)


def journal_note(
    title: str,
    text: str,
    *,
    resource_id: str,
    identifier: str,
    patient: dict[str, str],
    recorded: datetime,
) -> dict[str, Any]:
    """A free-text journal note: a DocumentReference the patient wrote (plain text)."""
    resource = _base("DocumentReference", resource_id, identifier)
    resource |= {
        "status": "current",
        "type": {
            "coding": [{"system": LOINC, "code": "51855-5", "display": "Patient Note"}],
            "text": "Your note",
        },
        "category": [{"coding": [{"system": DOCUMENT_CATEGORY, "code": "clinical-note"}]}],
        "subject": patient,
        "date": instant(recorded),
        "author": [patient],
        "description": title,
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64.b64encode(text.encode()).decode(),
                    "title": title,
                }
            }
        ],
    }
    return resource


# ---- delete and undo: the FHIR way, entered-in-error -----------------------------------------

BY_VERIFICATION = ("Condition", "AllergyIntolerance")


def is_deleted(resource: dict[str, Any]) -> bool:
    if resource.get("resourceType") in BY_VERIFICATION:
        codes = [
            c.get("code") for c in (resource.get("verificationStatus") or {}).get("coding", [])
        ]
        return "entered-in-error" in codes
    return resource.get("status") == "entered-in-error"


def mark_deleted(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource marked entered-in-error (Condition/AllergyIntolerance lose their clinical
    status then, as FHIR requires)."""
    rtype = resource["resourceType"]
    if rtype in BY_VERIFICATION:
        resource.pop("clinicalStatus", None)
        resource["verificationStatus"] = _status(VERIFICATION, rtype, "entered-in-error")
    else:
        resource["status"] = "entered-in-error"
    return resource
