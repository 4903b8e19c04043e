"""Checking and storing fetched resources: raw JSON as received plus the query columns.

A resource that is not valid FHIR R4 (fhirclient models, strict), has no usable id, is of
an unexpected type or belongs to another patient is quarantined with a reason; the rest of
its page is stored. Quarantine reasons name elements, never their values.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from fhirclient.models.fhirabstractbase import FHIRValidationError
from fhirclient.models.fhirelementfactory import FHIRElementFactory
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from portal.models import FhirRecord, QuarantinedResource
from portal.phr.classify import classify, parse_datetime

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# A "reference" key with a string value in json.dumps output (keys follow "{" or ", "; a
# quote inside a string is escaped, so text within strings never matches).
REFERENCE_TEXT = re.compile(r'(?:\{|, )"reference": "((?:[^"\\]|\\.)*)"')
PATIENT_PATHS = ("subject", "patient", "beneficiary")


# Per resource of a page: why it is refused (None: accepted); and the references seen.
Inspection = tuple[list[str | None], set[tuple[str, str]]]


@dataclass
class Checked:
    """One page after checking: rows to store, resources to quarantine, references seen."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    references: set[tuple[str, str]] = field(default_factory=set)


def check_page(
    resources: list[tuple[dict[str, Any] | Any, str]],
    *,
    connection_id: int,
    expected_type: str,
    patient_id: str,
    fetched_at: datetime,
    referenced_types: tuple[str, ...] = (),
    fhir_base: str = "",
    inspected: Inspection | None = None,
) -> Checked:
    """Rows and quarantine entries for (resource, search mode) pairs of one page.

    `inspected`: the result of `inspect` for these resources when it ran elsewhere (a
    validation process); otherwise it runs here.
    """
    if inspected is None:
        inspected = inspect(resources, expected_type, patient_id, referenced_types, fhir_base)
    reasons, refs = inspected
    out = Checked(references=refs)
    for (resource, _mode), reason in zip(resources, reasons, strict=True):
        if reason is not None:
            out.quarantined.append(_quarantine_row(connection_id, resource, reason, fetched_at))
        else:
            out.rows.append(record_row(connection_id, resource, fetched_at))
    return out


def prepare_page(
    resources: list[tuple[Any, str]],
    expected_type: str,
    patient_id: str,
    referenced_types: tuple[str, ...],
    fhir_base: str,
    connection_id: int,
    fetched_at: datetime,
) -> Checked:
    """`check_page` with each row's raw JSON already encoded (`raw_json` instead of `raw`).

    Pure and picklable: a validation process does all the CPU work of a page, and the
    writer only executes the upsert.
    """
    reasons, _ = inspect(resources, expected_type, patient_id)
    out = Checked()
    for (resource, _mode), reason in zip(resources, reasons, strict=True):
        if reason is not None:
            out.quarantined.append(_quarantine_row(connection_id, resource, reason, fetched_at))
            continue
        row = record_row(connection_id, resource, fetched_at)
        text = json.dumps(row.pop("raw"))  # the text the JSON column would write
        row["raw_json"] = text
        out.rows.append(row)
        if referenced_types:
            out.references |= text_references(text, referenced_types, fhir_base)
    return out


def inspect(
    resources: list[tuple[Any, str]],
    expected_type: str,
    patient_id: str,
    referenced_types: tuple[str, ...] = (),
    fhir_base: str = "",
) -> Inspection:
    """The CPU-heavy part of checking a page: why each resource is refused (or None), and
    the references of the accepted ones. Pure, so it can run in a validation process."""
    reasons: list[str | None] = []
    refs: set[tuple[str, str]] = set()
    for resource, mode in resources:
        reason = problem(resource, expected_type if mode != "include" else None, patient_id)
        reasons.append(reason)
        if reason is None and referenced_types:
            refs |= references(resource, referenced_types, fhir_base)
    return reasons, refs


def problem(resource: Any, expected_type: str | None, patient_id: str) -> str | None:
    """Why a resource cannot be stored, or None when it can."""
    if not isinstance(resource, dict):
        return "not a JSON object"
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if not isinstance(rtype, str) or not rtype:
        return "no resourceType"
    if expected_type is not None and rtype != expected_type:
        return f"a {rtype[:40]} in a {expected_type} search"
    if not isinstance(rid, str) or not FHIR_ID.match(rid):
        return "no valid id"
    try:
        _model(rtype)(resource)  # what FHIRElementFactory.instantiate(rtype, resource) does
    except FHIRValidationError as exc:
        return "not valid FHIR R4: " + _summary(exc)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        return f"not valid FHIR R4 ({type(exc).__name__})"
    if rtype != "Patient" and other_patient(resource, patient_id):
        return "belongs to another patient"
    if rtype == "Patient" and expected_type == "Patient" and rid != patient_id:
        return "another patient's Patient resource"
    return None


@functools.lru_cache(maxsize=64)
def _model(rtype: str) -> Any:
    """The fhirclient class (strict by default) FHIRElementFactory builds for `rtype`, found
    once: the factory finds it by comparing with each of some 650 names."""
    return type(FHIRElementFactory.instantiate(rtype, None))


def _summary(exc: FHIRValidationError) -> str:
    """The validation error without values: fhirclient names elements and types only."""
    text = " ".join(str(exc).split())
    return text.replace("{root}:", "").strip()[:400]


def other_patient(resource: dict[str, Any], patient_id: str) -> bool:
    """Whether the resource's subject/patient/beneficiary names a different Patient."""
    for path in PATIENT_PATHS:
        value = resource.get(path)
        if isinstance(value, dict):
            ref = value.get("reference")
            if isinstance(ref, str) and "Patient/" in ref:
                segments = ref.rstrip("/").split("/")
                if segments[-2:-1] == ["Patient"] and segments[-1] != patient_id:
                    return True
    return False


def references(resource: Any, types: tuple[str, ...], fhir_base: str = "") -> set[tuple[str, str]]:
    """(type, id) of references to `types` anywhere in the resource (relative or on our base)."""
    found: set[tuple[str, str]] = set()
    stack = [resource]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            ref = value.get("reference")
            if isinstance(ref, str):
                if fhir_base and ref.startswith(fhir_base + "/"):
                    ref = ref[len(fhir_base) + 1 :]
                parts = ref.split("/")
                if len(parts) == 2 and parts[0] in types and FHIR_ID.match(parts[1]):
                    found.add((parts[0], parts[1]))
            stack.extend(v for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend(v for v in value if isinstance(v, dict | list))
    return found


def text_references(text: str, types: tuple[str, ...], fhir_base: str = "") -> set[tuple[str, str]]:
    """`references(json.loads(text), ...)`, read from `json.dumps` output without parsing it."""
    found: set[tuple[str, str]] = set()
    for ref in REFERENCE_TEXT.findall(text):
        if "\\" in ref:
            ref = json.loads(f'"{ref}"')
        if fhir_base and ref.startswith(fhir_base + "/"):
            ref = ref[len(fhir_base) + 1 :]
        parts = ref.split("/")
        if len(parts) == 2 and parts[0] in types and FHIR_ID.match(parts[1]):
            found.add((parts[0], parts[1]))
    return found


def record_row(
    connection_id: int, resource: dict[str, Any], fetched_at: datetime
) -> dict[str, Any]:
    """Column values of a FhirRecord: raw JSON as received and the classify() columns."""
    meta: dict[str, Any] = resource["meta"] if isinstance(resource.get("meta"), dict) else {}
    version = meta.get("versionId")
    updated = meta.get("lastUpdated")
    c = classify(resource)
    return {
        "connection_id": connection_id,
        "resource_type": resource["resourceType"],
        "resource_id": resource["id"],
        "version_id": str(version)[:64] if version is not None else None,
        "last_updated": parse_datetime(updated) if isinstance(updated, str) else None,
        "fetched_at": fetched_at,
        "category": c.category[:40],
        "status": c.status[:40] if c.status else None,
        "code_system": c.code_system[:255] if isinstance(c.code_system, str) else None,
        "code": c.code[:100] if isinstance(c.code, str) else None,
        "display": c.display,
        "effective_at": c.effective_at,
        "raw": resource,
    }


def _quarantine_row(
    connection_id: int, resource: Any, reason: str, fetched_at: datetime
) -> dict[str, Any]:
    is_dict = isinstance(resource, dict)
    rtype = resource.get("resourceType") if is_dict else None
    rid = resource.get("id") if is_dict else None
    return {
        "connection_id": connection_id,
        "resource_type": rtype[:64] if isinstance(rtype, str) else None,
        "resource_id": rid[:64] if isinstance(rid, str) else None,
        "reason": reason[:500],
        "raw": resource if is_dict else None,
        "fetched_at": fetched_at,
    }


UPDATED_COLUMNS = (
    "version_id",
    "last_updated",
    "fetched_at",
    "category",
    "status",
    "code_system",
    "code",
    "display",
    "effective_at",
    "raw",
)


def upsert_records(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert or update records by (connection, type, id) in one executemany.

    Rows carry `raw` (the resource) or, from `prepare_page`, `raw_json` (its JSON text,
    bound as is); not both kinds in one call.
    """
    if not rows:
        return 0
    unique = list(
        {(r["connection_id"], r["resource_type"], r["resource_id"]): r for r in rows}.values()
    )
    dialect = session.get_bind().dialect.name
    session.execute(_upsert_statement(dialect, "raw_json" in unique[0]), unique)
    return len(unique)


@functools.cache
def _upsert_statement(dialect: str, encoded: bool) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE, built once per dialect and kind of row (so compiled
    once)."""
    table = cast(sa.Table, FhirRecord.__table__)
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table)
        text: Any = sa.cast(sa.bindparam("raw_json", type_=sa.Text()), postgresql.JSONB)
    elif dialect == "sqlite":
        stmt = sqlite.insert(table)
        text = sa.bindparam("raw_json", type_=sa.Text())  # SQLite keeps JSON as this text
    else:
        raise NotImplementedError(f"upsert on {dialect}")
    if encoded:
        stmt = stmt.values(raw=text)
    return stmt.on_conflict_do_update(
        index_elements=["connection_id", "resource_type", "resource_id"],
        set_={name: getattr(stmt.excluded, name) for name in UPDATED_COLUMNS},
    )


def quarantine(session: Session, rows: list[dict[str, Any]], sync_run_id: int | None) -> int:
    if rows:
        session.execute(
            sa.insert(QuarantinedResource), [{**r, "sync_run_id": sync_run_id} for r in rows]
        )
    return len(rows)
