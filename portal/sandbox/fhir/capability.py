"""The CapabilityStatement served at /fhir/metadata, built from the type registry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from portal.sandbox.fhir.registry import TYPES, ResourceType

FHIR_VERSION = "4.0.1"
SECURITY_SERVICE_SYSTEM = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
OAUTH_ENDPOINTS = ("authorize", "token", "revoke", "introspect")


def capability_statement(
    name: str, fhir_base: str, oauth_uris: dict[str, str], date: datetime
) -> dict[str, Any]:
    """What this server supports, with where SMART apps get their tokens.

    `oauth_uris` maps each of OAUTH_ENDPOINTS to its absolute URL.
    """
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date.isoformat().replace("+00:00", "Z"),
        "publisher": name,
        "kind": "instance",
        "software": {"name": "Portal sandbox EHR"},
        "implementation": {"description": name, "url": fhir_base},
        "fhirVersion": FHIR_VERSION,
        "format": ["json", "application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "extension": [
                        {
                            "url": OAUTH_URIS,
                            "extension": [
                                {"url": key, "valueUri": oauth_uris[key]} for key in OAUTH_ENDPOINTS
                            ],
                        }
                    ],
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": SECURITY_SERVICE_SYSTEM,
                                    "code": "SMART-on-FHIR",
                                    "display": "SMART-on-FHIR",
                                }
                            ],
                            "text": "OAuth2 using SMART-on-FHIR profile",
                        }
                    ],
                },
                "resource": [_resource(t) for t in TYPES.values()],
            }
        ],
    }


def _resource(rtype: ResourceType) -> dict[str, Any]:
    interactions = ["read", "vread", "search-type"]
    if rtype.creatable:
        interactions.append("create")
    entry: dict[str, Any] = {
        "type": rtype.name,
        "interaction": [{"code": code} for code in interactions],
        "versioning": "versioned",
        "readHistory": True,
        "searchParam": [
            {"name": param, "type": kind} for param, kind in rtype.search_params.items()
        ],
    }
    if rtype.creatable:
        entry["conditionalCreate"] = True
    if rtype.compartment:
        entry["documentation"] = (
            "In the patient compartment: a token sees only its own patient's resources."
        )
    if rtype.name == "Binary":
        entry["documentation"] = (
            "Read answers the content itself, with its contentType, unless the Accept header "
            "names application/fhir+json (then the Binary resource). A Binary belongs to the "
            "patient its securityContext names, directly or through a resource of theirs."
        )
    return entry
