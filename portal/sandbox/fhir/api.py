"""The FHIR interactions the sandbox answers: read, vread and search (create: create.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.sandbox.fhir.access import Caller, readable, search_clauses
from portal.sandbox.fhir.faulting import SearchFaults
from portal.sandbox.fhir.registry import ResourceType
from portal.sandbox.fhir.search import SearchQuery, is_small_int, page_url, run_search, valid_id
from portal.sandbox.models import FhirHistory, FhirResource
from portal.sandbox.outcome import FhirError


def read(session: Session, caller: Caller, rtype: ResourceType, rid: str) -> FhirResource:
    """The current version of a resource the caller may read."""
    if not valid_id(rid):
        raise FhirError(404, f"{rtype.name}/{rid} is not known")
    return readable(session, caller, rtype, rid)


def vread(
    session: Session, caller: Caller, rtype: ResourceType, rid: str, vid: str
) -> dict[str, Any]:
    """One version of a resource; access is decided on the current version."""
    current = read(session, caller, rtype, rid)
    version = (
        session.get(FhirHistory, (rtype.name, current.resource_id, int(vid)))
        if is_small_int(vid) and len(vid) <= 9
        else None
    )
    if version is None:
        raise FhirError(404, f"{rtype.name}/{rid} has no version {vid}")
    return version.content


def search(
    session: Session,
    caller: Caller,
    query: SearchQuery,
    fhir_base: str,
    faults: SearchFaults | None = None,
) -> dict[str, Any]:
    """A searchset Bundle with one page of what the query matches and the caller may see."""
    faults = faults or SearchFaults()
    page = run_search(session, query, search_clauses(caller, query))
    name = query.resource_type.name
    self_url = page_url(fhir_base, query, cursor=query.cursor)
    links = [{"relation": "self", "url": self_url}]
    if faults.looping_next:
        links.append({"relation": "next", "url": self_url})
    elif page.next_cursor is not None:
        links.append({"relation": "next", "url": page_url(fhir_base, query, page.next_cursor)})
    entries = [_entry(fhir_base, content) for _pk, content in page.rows]
    if faults.malformed_resource:
        entries.append(_entry(fhir_base, malformed(name)))
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": fhir_instant(utcnow())},
        "type": "searchset",
        "total": page.total,
        "link": links,
        "entry": entries,
    }


def _entry(fhir_base: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": f"{fhir_base}/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "search": {"mode": "match"},
    }


def malformed(resource_type: str) -> dict[str, Any]:
    """What a buggy EHR might send: `code` is a number and the required `status` is missing."""
    return {
        "resourceType": resource_type,
        "id": f"malformed-{uuid.uuid4()}",
        "code": 12345,
    }


def fhir_instant(when: datetime) -> str:
    """A FHIR instant in UTC with a `Z`."""
    return when.isoformat().replace("+00:00", "Z")
