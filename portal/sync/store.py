"""Checking and storing fetched resources: raw JSON as received plus the query columns.

A resource that is not valid FHIR R4 (fhirclient's strict models; see fastcheck), has no
usable id, is of an unexpected type, belongs to another patient or is nested more deeply
than MAX_DEPTH is quarantined with a reason; the rest of its page is stored. Quarantine
reasons name elements, never their values.
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
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from portal import fhirjson
from portal.db import upsert_insert
from portal.models import FhirRecord, QuarantinedResource
from portal.phr.classify import classify, parse_datetime
from portal.smart.fhir import FHIR_ID
from portal.sync import fastcheck

# A "reference" member with a string value in `encode` output (no spaces). A quote inside a
# string is escaped, so a match whose first quote follows '{' or ',' opens a key that is
# exactly "reference"; any other match is inside a string or ends a longer key.
REFERENCE_KEY = '"reference":"'
STRING_REST = re.compile(r'((?:[^"\\]|\\.)*)"')  # a JSON string's content and closing quote
PATIENT_PATHS = ("subject", "patient", "beneficiary")
# Levels of objects and lists a stored resource may have: orjson's own limit. Deeper JSON
# could not be read back (records pages, exports) without running out of recursion.
MAX_DEPTH = 254
TOO_DEEP = "nested too deeply to read"


class TooDeep(ValueError):
    """A resource nested more deeply than MAX_DEPTH."""


@dataclass
class Checked:
    """One page after checking: rows to store, resources to quarantine, references seen."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    references: set[tuple[str, str]] = field(default_factory=set)


def prepare_page(
    resources: list[tuple[Any, str]],
    expected_type: str,
    patient_id: str,
    referenced_types: tuple[str, ...],
    fhir_base: str,
    connection_id: int,
    fetched_at: datetime,
) -> Checked:
    """Rows (with their raw JSON encoded, `raw_json`) and quarantine entries for the
    (resource, search mode) pairs of one page, and the references of the stored ones.

    All the CPU work of a page, so the writer only executes the upsert.
    """
    out = Checked()
    for resource, mode in resources:
        try:
            text = encode(resource)  # the text the JSON column would write
        except TooDeep:  # before any check walks it: set aside without its content
            row = _quarantine_row(connection_id, resource, TOO_DEEP, fetched_at, keep=False)
            out.quarantined.append(row)
            continue
        reason = problem(resource, expected_type if mode != "include" else None, patient_id)
        if reason is not None:
            out.quarantined.append(_quarantine_row(connection_id, resource, reason, fetched_at))
            continue
        row = record_row(connection_id, resource, fetched_at)
        del row["raw"]
        row["raw_json"] = text
        out.rows.append(row)
        if referenced_types:
            out.references |= text_references(text, referenced_types, fhir_base)
    return out


def encode(resource: Any) -> str:
    """Compact JSON text of a resource (what is stored; `text_references` reads it); TooDeep
    when it is nested more than MAX_DEPTH levels."""
    try:
        return fhirjson.dumps(resource)  # decimals with the digits the EHR sent
    except TypeError:  # nested too deeply, or an integer beyond 64 bits
        if deeper_than(resource, MAX_DEPTH):
            raise TooDeep(f"nested more than {MAX_DEPTH} levels") from None
        return json.dumps(resource, separators=(",", ":"), ensure_ascii=False)


def deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and lists nest more than `limit` levels in `value` (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return False


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
        # Strict fhirclient models, built only when the quick walk over their tables cannot
        # show they would accept the resource (see fastcheck); they give the reason.
        if not fastcheck.accepts(resource):
            fastcheck.model(rtype)(resource)  # as FHIRElementFactory.instantiate would
    except FHIRValidationError as exc:
        return "not valid FHIR R4: " + _summary(exc)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        return f"not valid FHIR R4 ({type(exc).__name__})"
    except RecursionError:  # fhirclient goes several calls deep per level
        return TOO_DEEP
    if rtype != "Patient" and other_patient(resource, patient_id):
        return "belongs to another patient"
    if rtype == "Patient" and expected_type == "Patient" and rid != patient_id:
        return "another patient's Patient resource"
    return None


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


def text_references(text: str, types: tuple[str, ...], fhir_base: str = "") -> set[tuple[str, str]]:
    """(type, id) of references to `types` anywhere in a resource (relative or on our base),
    read from its `encode` text without parsing it."""
    found: set[tuple[str, str]] = set()
    wanted = _reference_prefixes(types, fhir_base)
    at = text.find(REFERENCE_KEY)  # far quicker than a regular expression scanning the text
    while at != -1:
        value_at = at + len(REFERENCE_KEY)
        is_key = at > 0 and text[at - 1] in "{,"  # not the end of a longer key
        at = text.find(REFERENCE_KEY, value_at)
        # Most references name the patient or a visit: skip them before reading them.
        # (`encode` escapes no character a type name can hold, so the prefix is literal.)
        if not is_key or not text.startswith(wanted, value_at):
            continue
        match = STRING_REST.match(text, value_at)
        if match is None:
            continue
        ref = match.group(1)
        if "\\" in ref:
            ref = json.loads(f'"{ref}"')
        if fhir_base and ref.startswith(fhir_base + "/"):
            ref = ref[len(fhir_base) + 1 :]
        parts = ref.split("/")
        if len(parts) == 2 and parts[0] in types and FHIR_ID.match(parts[1]):
            found.add((parts[0], parts[1]))
    return found


@functools.lru_cache(maxsize=32)
def _reference_prefixes(types: tuple[str, ...], fhir_base: str) -> tuple[str, ...]:
    relative = tuple(f"{t}/" for t in types)
    return relative + tuple(f"{fhir_base}/{p}" for p in relative) if fhir_base else relative


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
        "encounter_ref": c.encounter_ref,
        "raw": resource,
    }


def _quarantine_row(
    connection_id: int, resource: Any, reason: str, fetched_at: datetime, *, keep: bool = True
) -> dict[str, Any]:
    """A quarantine entry; with `keep` False, without the resource's content."""
    is_dict = isinstance(resource, dict)
    rtype = resource.get("resourceType") if is_dict else None
    rid = resource.get("id") if is_dict else None
    return {
        "connection_id": connection_id,
        "resource_type": rtype[:64] if isinstance(rtype, str) else None,
        "resource_id": rid[:64] if isinstance(rid, str) else None,
        "reason": reason[:500],
        "raw": resource if is_dict and keep else None,
        "fetched_at": fetched_at,
    }


KEY_COLUMNS = ("connection_id", "resource_type", "resource_id")
VALUE_COLUMNS = (
    "version_id",
    "last_updated",
    "fetched_at",
    "category",
    "status",
    "code_system",
    "code",
    "display",
    "effective_at",
    "encounter_ref",
)


def upsert_records(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert or update records by (connection, type, id) in one executemany.

    Rows come from `prepare_page`: column values, and `raw_json`, the JSON text bound as is.
    """
    if not rows:
        return 0
    unique = list(
        {(r["connection_id"], r["resource_type"], r["resource_id"]): r for r in rows}.values()
    )
    upsert = _upsert(session.get_bind().dialect)
    session.connection().exec_driver_sql(upsert.sql, upsert.parameters(unique))
    return len(unique)


@dataclass(frozen=True)
class _Upsert:
    """The upsert compiled for one database, and how rows become its driver's parameters.

    SQLAlchemy's own executemany prepares each value of each row through its generic
    machinery, several times the cost of the insert itself for a page of records. Here the
    same bind processors (the column types' own) run in one tight loop.
    """

    sql: str
    names: tuple[str, ...]
    processors: tuple[Any, ...]  # per name: the type's bind processor, or None
    positional: bool

    def parameters(self, rows: list[dict[str, Any]]) -> list[Any]:
        pairs = tuple(zip(self.names, self.processors, strict=True))
        if self.positional:
            return [tuple(p(r[n]) if p else r[n] for n, p in pairs) for r in rows]
        return [{n: p(r[n]) if p else r[n] for n, p in pairs} for r in rows]


_upserts: dict[tuple[str, str], _Upsert] = {}


def _upsert(dialect: Any) -> _Upsert:
    key = (dialect.name, dialect.paramstyle)
    found = _upserts.get(key)
    if found is None:
        compiled = _upsert_statement(dialect.name).compile(dialect=dialect)
        names = tuple(compiled.positiontup or compiled.binds)
        table = cast(sa.Table, FhirRecord.__table__)
        types = {c.name: c.type for c in table.columns} | {"raw_json": sa.Text()}
        processors = tuple(types[n].dialect_impl(dialect).bind_processor(dialect) for n in names)
        found = _upserts[key] = _Upsert(compiled.string, names, processors, compiled.positional)
    return found


def _upsert_statement(dialect: str) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE of encoded rows."""
    stmt = upsert_insert(dialect, FhirRecord.__table__)
    text: Any = sa.bindparam("raw_json", type_=sa.Text())  # SQLite keeps JSON as this text
    if dialect == "postgresql":
        text = sa.cast(text, postgresql.JSONB)
    columns = (*KEY_COLUMNS, *VALUE_COLUMNS)
    stmt = stmt.values({name: sa.bindparam(name) for name in columns} | {"raw": text})
    return stmt.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS),
        set_={name: getattr(stmt.excluded, name) for name in (*VALUE_COLUMNS, "raw")},
    )


def quarantine(session: Session, rows: list[dict[str, Any]], sync_run_id: int | None) -> int:
    if rows:
        session.execute(
            sa.insert(QuarantinedResource), [{**r, "sync_run_id": sync_run_id} for r in rows]
        )
    return len(rows)
