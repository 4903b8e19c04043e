"""The patient's own entries as US Core-shaped FHIR R4 resources, checked before they are kept.

Each entry carries a business identifier (`urn:ietf:rfc:3986` + a `urn:uuid:`) that stays the
same across edits and EHRs: it is what `If-None-Exist` matches when an entry is sent to a
clinic, so a retry never makes a second copy. Every version gets a Provenance naming the
patient as author.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from fhirclient.models.fhirabstractbase import FHIRValidationError
from fhirclient.models.fhirelementfactory import FHIRElementFactory

from portal.phr.entries.catalog import LOINC, OBSERVATION_CATEGORY, UCUM, Measure

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
    number: int | float = int(value) if value == value.to_integral_value() else float(value)
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
