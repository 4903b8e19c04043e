"""FHIR create, plain and conditional (If-None-Exist), for patient-reported data."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa
from fhirclient.models.fhirabstractbase import FHIRValidationError
from fhirclient.models.fhirelementfactory import FHIRElementFactory
from sqlalchemy.orm import Session

from portal.sandbox.fhir.access import Caller, scoped_clauses
from portal.sandbox.fhir.registry import ResourceType
from portal.sandbox.fhir.search import first_matches, parse_search
from portal.sandbox.fhir.store import add_resource, patient_of
from portal.sandbox.models import FhirResource
from portal.sandbox.outcome import FhirError

# fhirclient names objects in its messages; their reprs carry memory addresses, not data.
_OBJECT_REPR = re.compile(r"<fhirclient\.models\.[\w.]+?\.(\w+) object at 0x[0-9a-f]+>")
_CLASS_REPR = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")


@dataclass(frozen=True)
class CreateResult:
    """The stored resource and whether this request created it (False: If-None-Exist hit)."""

    row: FhirResource
    created: bool


def create(
    session: Session,
    caller: Caller,
    rtype: ResourceType,
    body: Any,
    *,
    fhir_base: str,
    if_none_exist: str | None = None,
) -> CreateResult:
    """Validate and store a new resource in the caller's patient compartment."""
    if not rtype.creatable:
        raise FhirError(405, f"Creating {rtype.name} resources is not supported")
    caller.require(rtype, "c")
    resource = validate(rtype, body)
    resource = _relative_references(resource, fhir_base)
    patient_id = caller.compartment(rtype)
    assert patient_id is not None  # every creatable type is a compartment type
    _check_compartment(session, rtype, resource, patient_id)
    if if_none_exist is not None:
        existing = _conditional_match(session, caller, rtype, if_none_exist, fhir_base)
        if existing is not None:
            return CreateResult(existing, created=False)
    resource["id"] = str(uuid.uuid4())  # the server assigns ids; a client's id is ignored
    row = add_resource(session, resource)
    # Provenance joins the compartment through its targets, which the index cannot see.
    row.patient_id = patient_id
    session.flush()
    return CreateResult(row, created=True)


def validate(rtype: ResourceType, body: Any) -> dict[str, Any]:
    """The body as a resource of this type, or a 400 saying what is wrong (never the values)."""
    if not isinstance(body, dict):
        raise FhirError(400, "The body must be a JSON object (a FHIR resource)")
    if body.get("resourceType") != rtype.name:
        raise FhirError(400, f"The body's resourceType must be {rtype.name}")
    try:
        # The factory builds the fhirclient model in its default strict mode.
        FHIRElementFactory.instantiate(rtype.name, body)
    except FHIRValidationError as err:
        raise FhirError(400, f"Invalid {rtype.name}: " + "; ".join(describe(err))) from None
    except (TypeError, ValueError, AttributeError, KeyError):
        raise FhirError(400, f"Invalid {rtype.name}: not a well-formed resource") from None
    return dict(body)


def describe(err: Exception, path: str = "") -> list[str]:
    """fhirclient's nested validation errors as `path: problem` lines."""
    if isinstance(err, FHIRValidationError):
        here = ".".join(p for p in (path, err.path) if p)
        return [line for sub in err.errors for line in describe(sub, here)]
    message = str(err.args[0]) if err.args else type(err).__name__
    message = _CLASS_REPR.sub(r"\1", _OBJECT_REPR.sub(r"\1", message))
    return [f"{path}: {message}" if path else message]


def _relative_references(resource: dict[str, Any], fhir_base: str) -> dict[str, Any]:
    """References to this server made relative, so the compartment index recognises them."""
    prefix = fhir_base + "/"

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: walk(v) for k, v in value.items()}
            ref = out.get("reference")
            if isinstance(ref, str) and ref.startswith(prefix):
                out["reference"] = ref[len(prefix) :]
            return out
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    walked: dict[str, Any] = walk(resource)
    return walked


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [r for v in value.values() for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []


def _check_compartment(
    session: Session, rtype: ResourceType, resource: dict[str, Any], patient_id: str
) -> None:
    """403 unless the resource is about the caller's patient and names no other patient."""
    refs = _references(resource)
    if any(r.startswith("Patient/") and r != f"Patient/{patient_id}" for r in refs):
        raise FhirError(403, "The resource may only reference the token's patient")
    if rtype.name == "Provenance":
        _check_targets(session, resource.get("target") or [], patient_id)
    elif patient_of(resource) != patient_id:
        raise FhirError(
            403, f"The {rtype.name} must belong to the token's patient (Patient/{patient_id})"
        )


def _check_targets(session: Session, targets: list[Any], patient_id: str) -> None:
    """Every target of a Provenance is the patient or a resource in the patient's compartment."""
    if not targets:  # fhirclient lets an empty required list through
        raise FhirError(400, "Invalid Provenance: target needs at least one reference")
    keys: set[tuple[str, str]] = set()
    for target in targets:
        ref = target.get("reference") if isinstance(target, dict) else None
        parts = ref.split("/") if isinstance(ref, str) else []
        # `Type/id` or `Type/id/_history/n`; anything else cannot be checked, so is refused.
        if len(parts) not in (2, 4) or (len(parts) == 4 and parts[2] != "_history"):
            raise FhirError(403, "Provenance targets must be resources of the token's patient")
        if (parts[0], parts[1]) != ("Patient", patient_id):
            keys.add((parts[0], parts[1]))
    if not keys:
        return
    rows = session.execute(
        sa.select(
            FhirResource.resource_type, FhirResource.resource_id, FhirResource.patient_id
        ).where(sa.tuple_(FhirResource.resource_type, FhirResource.resource_id).in_(keys))
    )
    owned = {(t, i) for t, i, p in rows if p == patient_id}
    if keys - owned:
        raise FhirError(403, "Provenance targets must be resources of the token's patient")


def _conditional_match(
    session: Session, caller: Caller, rtype: ResourceType, if_none_exist: str, fhir_base: str
) -> FhirResource | None:
    """The one resource matching an If-None-Exist query, None for none, 412 for several."""
    params = parse_qsl(if_none_exist.lstrip("?"), keep_blank_values=True)
    if not params:
        raise FhirError(400, "If-None-Exist must be a search query such as identifier=sys|123")
    # Strict: an ignored (misspelt) parameter would widen the match to unrelated resources.
    query = parse_search(
        rtype, params, fhir_base=fhir_base, default_count=2, max_count=2, strict=True
    )
    matches = first_matches(session, scoped_clauses(caller, query, "r"), limit=2)
    if len(matches) > 1:
        raise FhirError(412, "If-None-Exist matches more than one resource")
    return matches[0] if matches else None
