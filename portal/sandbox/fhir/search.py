"""FHIR search: parsing parameters, filtering in SQL, paging with a keyset cursor.

Results come in primary-key order and a page's next link carries the last key it showed
(`_cursor`), so following next links yields every match exactly once, even while
resources are being created.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from portal.sandbox.fhir.registry import ResourceType
from portal.sandbox.fhir.store import parse_fhir_date
from portal.sandbox.models import FhirResource, FhirToken
from portal.sandbox.outcome import FhirError
from portal.sandbox.scopes import TokenFilter, split_token

# Accepted everywhere and without effect: we only speak JSON and always count the total.
NO_OP_PARAMS = frozenset({"_format", "_pretty", "_total"})
DATE_PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"})
_PREFIXED = re.compile(r"^([a-z]{2})(\d.*)$")
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True)
class DateFilter:
    """`prefix` applied to the instants [start, end] a search date value covers."""

    prefix: str
    start: datetime
    end: datetime


@dataclass
class SearchQuery:
    """A parsed search: each list is AND-ed; inner lists (comma-separated values) are OR-ed."""

    resource_type: ResourceType
    count: int
    cursor: int | None = None
    ids: list[list[str]] = field(default_factory=list)
    # Patient ids named by `patient`/`subject`; None stands for a reference to something else.
    patients: list[list[str | None]] = field(default_factory=list)
    tokens: list[tuple[str, list[TokenFilter]]] = field(default_factory=list)
    dates: list[DateFilter] = field(default_factory=list)
    last_updated: list[DateFilter] = field(default_factory=list)
    applied: list[tuple[str, str]] = field(default_factory=list)  # for self and next links


def parse_search(
    rtype: ResourceType,
    params: list[tuple[str, str]],
    *,
    fhir_base: str,
    default_count: int,
    max_count: int,
    strict: bool = False,
) -> SearchQuery:
    """Parse query parameters; bad values are a 400, unknown names too when `strict`."""
    known = rtype.search_params
    query = SearchQuery(rtype, count=min(default_count, max_count))
    for raw_name, value in params:
        name, _, modifier = raw_name.partition(":")
        if name in NO_OP_PARAMS:
            continue
        if name == "_count":
            query.count = min(_non_negative_int(raw_name, value), max_count)
            continue
        if name == "_cursor":
            query.cursor = _non_negative_int(raw_name, value)
            continue
        if name not in known:
            if strict:
                raise FhirError(400, f"Unknown search parameter {raw_name!r} for {rtype.name}")
            continue  # FHIR's lenient default; the self link shows what was applied
        if modifier:
            # A modifier changes the meaning (e.g. :not); ignoring it would answer another question.
            raise FhirError(400, f"Search modifier {raw_name!r} is not supported")
        values = [v.replace("\\,", ",") for v in _UNESCAPED_COMMA.split(value) if v]
        if not values:
            continue  # an empty value does not constrain the search
        _add_param(query, name, known[name], value, values, fhir_base)
        query.applied.append((name, value))
    return query


def _add_param(
    query: SearchQuery, name: str, kind: str, value: str, values: list[str], fhir_base: str
) -> None:
    if name == "_id":
        query.ids.append(values)
    elif kind == "reference":
        query.patients.append([_patient_id(v, fhir_base) for v in values])
    elif name == "_lastUpdated":
        query.last_updated.append(_date_filter(name, value))
    elif kind == "date":
        query.dates.append(_date_filter(name, value))
    else:
        query.tokens.append((name, [split_token(v) for v in values]))


def _non_negative_int(name: str, value: str) -> int:
    if not is_small_int(value):
        raise FhirError(400, f"{name} must be a non-negative integer")
    return int(value)


def is_small_int(value: str) -> bool:
    """ASCII digits only (str.isdigit takes "²"), few enough to fit every backend's integer."""
    return value.isascii() and value.isdigit() and len(value) <= 18


def _patient_id(value: str, fhir_base: str) -> str | None:
    """`x`, `Patient/x` or `{base}/Patient/x` -> `x`; references to other types -> None."""
    if value.startswith(fhir_base + "/"):
        value = value[len(fhir_base) + 1 :]
    if "/" not in value:
        return value
    rtype, _, rid = value.partition("/")
    return rid if rtype == "Patient" and "/" not in rid else None


def _date_filter(name: str, value: str) -> DateFilter:
    prefix, rest = "eq", value
    m = _PREFIXED.match(value)
    if m:
        prefix, rest = m.group(1), m.group(2)
        if prefix not in DATE_PREFIXES:
            raise FhirError(400, f"Unsupported prefix {prefix!r} in {name}")
    try:
        start, end = parse_fhir_date(rest)
    except ValueError:
        raise FhirError(
            400, f"{name} must be a FHIR date or dateTime, with an optional prefix"
        ) from None
    return DateFilter(prefix, start, end)


def token_clause(param: str, filters: list[TokenFilter]) -> ColumnElement[bool]:
    """The resource has a `param` value matching any filter (`code`, `sys|code`, `|code`)."""
    alternatives = []
    for system, code in filters:
        if system is None and not code:
            continue  # an empty value (e.g. from a trailing comma in a scope) names nothing
        parts: list[ColumnElement[bool]] = []
        if code:
            parts.append(FhirToken.code == code)
        if system == "":  # `|code`: the value must have no system
            parts.append(sa.or_(FhirToken.system.is_(None), FhirToken.system == ""))
        elif system is not None:
            parts.append(FhirToken.system == system)
        alternatives.append(sa.and_(*parts))
    # Correlated EXISTS: the (param, code, resource_pk) index answers it per candidate row.
    return (
        sa.exists()
        .where(
            FhirToken.resource_pk == FhirResource.pk,
            FhirToken.param == param,
            sa.or_(sa.false(), *alternatives),
        )
        .correlate(FhirResource)
    )


def date_clause(
    start_col: Any, end_col: Any, f: DateFilter, open_ended: bool = True
) -> ColumnElement[bool]:
    """FHIR date comparison of a resource's range [start_col, end_col] with the search range.

    A Period missing its end (ongoing) or its start counts as open on that side.
    """
    has_date = sa.or_(start_col.is_not(None), end_col.is_not(None))
    if open_ended:
        open_end = sa.and_(end_col.is_(None), start_col.is_not(None))
        open_start = sa.and_(start_col.is_(None), end_col.is_not(None))
    else:
        open_end = open_start = sa.false()
    within = sa.and_(start_col >= f.start, end_col <= f.end)
    clauses: dict[str, ColumnElement[bool]] = {
        "eq": within,
        "ne": sa.not_(within),
        "gt": sa.or_(end_col > f.end, open_end),
        "ge": sa.or_(end_col >= f.start, open_end),
        "lt": sa.or_(start_col < f.start, open_start),
        "le": sa.or_(start_col <= f.end, open_start),
        "sa": start_col > f.end,
        "eb": end_col < f.start,
    }
    return sa.and_(has_date, clauses[f.prefix])


def where_clauses(
    query: SearchQuery,
    patient_id: str | None,
    restrictions: dict[str, list[TokenFilter]] | None,
) -> list[ColumnElement[bool]]:
    """Everything a search filters on: the query, the caller's compartment and scope grants."""
    clauses: list[ColumnElement[bool]] = [FhirResource.resource_type == query.resource_type.name]
    if patient_id is not None:
        clauses.append(FhirResource.patient_id == patient_id)
    for ids in query.ids:
        clauses.append(FhirResource.resource_id.in_(ids))
    for param, filters in query.tokens:
        clauses.append(token_clause(param, filters))
    for param, filters in (restrictions or {}).items():
        clauses.append(token_clause(param, filters))
    for f in query.dates:
        clauses.append(date_clause(FhirResource.date_start, FhirResource.date_end, f))
    for f in query.last_updated:
        lu = FhirResource.last_updated
        clauses.append(date_clause(lu, lu, f, open_ended=False))
    return clauses


@dataclass
class Page:
    """One page of matches: their (pk, content) in order, the total, the next cursor."""

    total: int
    rows: list[tuple[int, dict[str, Any]]]
    next_cursor: int | None


def run_search(session: Session, query: SearchQuery, clauses: list[ColumnElement[bool]]) -> Page:
    """Count all matches and fetch one page of them: two queries whatever the page size."""
    total = session.scalar(sa.select(sa.func.count()).select_from(FhirResource).where(*clauses))
    page_clauses = list(clauses)
    if query.cursor is not None:
        page_clauses.append(FhirResource.pk > query.cursor)
    rows: list[tuple[int, dict[str, Any]]] = []
    if query.count:
        result = session.execute(
            sa.select(FhirResource.pk, FhirResource.content)
            .where(*page_clauses)
            .order_by(FhirResource.pk)
            .limit(query.count + 1)  # one more tells whether a next page exists
        )
        rows = [(pk, content) for pk, content in result]
    more = len(rows) > query.count
    rows = rows[: query.count]
    return Page(total or 0, rows, rows[-1][0] if more and rows else None)


def first_matches(
    session: Session, clauses: list[ColumnElement[bool]], limit: int
) -> list[FhirResource]:
    """Up to `limit` matching resources (conditional create needs to tell 0, 1 and more)."""
    return list(
        session.scalars(
            sa.select(FhirResource).where(*clauses).order_by(FhirResource.pk).limit(limit)
        )
    )


def page_url(
    fhir_base: str, query: SearchQuery, cursor: int | None = None, count: int | None = None
) -> str:
    """Absolute GET URL of a page of this search, with the parameters actually applied."""
    params = [*query.applied, ("_count", str(query.count if count is None else count))]
    if cursor is not None:
        params.append(("_cursor", str(cursor)))
    return f"{fhir_base}/{query.resource_type.name}?{urlencode(params)}"


def valid_id(value: str) -> bool:
    """Whether `value` is a syntactically valid FHIR id."""
    return bool(_ID.match(value))
