"""Reading a person's stored record: the rows of their connections, in plain-words view models.

Every query is scoped to the connections of a `RecordView` (see `portal.phr.access`) and goes
by (connection_id, category), the index the records pages are built on. Records marked
`entered-in-error` never leave this module.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from portal.db import JSONType
from portal.models import EhrConnection, FhirRecord, MergeSplit, SyncRun
from portal.phr.access import RecordView
from portal.phr.names import medicine_name, plain_case
from portal.phr.words import (
    age_text,
    clean_name,
    concept_text,
    date_text,
    parse_date,
    person_name,
    tidy,
)

if TYPE_CHECKING:
    from portal.phr.availability import SectionState

HIDDEN = "entered-in-error"
# The records section (a sharing unit, see portal.smart.scopes) each stored category belongs to.
CATEGORY_SECTIONS: dict[str, tuple[str, ...]] = {
    "patient": ("patient",),
    "problems": ("problems",),
    "diagnoses": ("problems",),
    "medications": ("medications",),
    "medication-details": ("medications",),
    "allergies": ("allergies",),
    "immunizations": ("immunizations",),
    "labs": ("labs",),
    "observations": ("labs",),
    "reports": ("labs", "documents"),
    "vitals": ("vitals",),
    "social": ("social",),
    "surveys": ("surveys",),
    "visits": ("visits",),
    "procedures": ("procedures",),
    "documents": ("documents",),
    "imaging": ("imaging",),
    "careplans": ("careplans",),
    "goals": ("careplans",),
    "careteam": ("careteam",),
    "coverage": ("coverage",),
    "claims": ("claims",),
    "directory": ("directory",),
}
T = TypeVar("T")

_COLUMNS = (
    FhirRecord.id,
    FhirRecord.connection_id,
    FhirRecord.resource_type,
    FhirRecord.resource_id,
    FhirRecord.category,
    FhirRecord.status,
    FhirRecord.code_system,
    FhirRecord.code,
    FhirRecord.display,
    FhirRecord.effective_at,
)


class _Pluck(FunctionElement[Any]):
    """Some top-level elements of a JSON column, as one JSON array.

    The database parses each document once and sends only what a page reads: decoding whole
    resources in Python is most of the cost of a long page.
    """

    type = JSONType
    inherit_cache = True
    name = "pluck"


_ELEMENT = re.compile(r"^_?[A-Za-z][A-Za-z0-9]*$")


@functools.lru_cache(maxsize=256)
def _plucked(elements: tuple[str, ...]) -> _Pluck:
    for element in elements:
        if not _ELEMENT.match(element):
            raise ValueError(element)
    return _Pluck(FhirRecord.raw, *(sa.literal_column(f"'{e}'") for e in elements))


def pluck(elements: Sequence[str]) -> _Pluck:
    """`raw` reduced to `elements` (names are constants of this package, never user input);
    built once per set of elements (an expression is immutable)."""
    return _plucked(tuple(elements))


def _names(element: _Pluck) -> tuple[Any, list[str]]:
    column, *names = list(element.clauses)
    return column, [str(n.name).strip("'") for n in names]


@compiles(_Pluck, "sqlite")
def _pluck_sqlite(element: _Pluck, compiler: Any, **kw: Any) -> str:
    column, names = _names(element)
    paths = [f"'$.\"{n}\"'" for n in names] + ["'$.\"_\"'"] * (len(names) < 2)
    return f"json_extract({compiler.process(column, **kw)}, {', '.join(paths)})"


@compiles(_Pluck, "postgresql")
def _pluck_postgresql(element: _Pluck, compiler: Any, **kw: Any) -> str:
    column, names = _names(element)
    col = compiler.process(column, **kw)
    return f"jsonb_build_array({', '.join(f'{col} -> {chr(39)}{n}{chr(39)}' for n in names)})"


@dataclass(frozen=True)
class Row:
    """One stored resource, read without the ORM's bookkeeping (pages read thousands)."""

    id: int
    connection_id: int
    resource_type: str
    resource_id: str
    category: str
    status: str | None
    code_system: str | None
    code: str | None
    display: str | None
    effective_at: datetime | None
    raw: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.resource_type}/{self.resource_id}"


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a longer list."""

    items: list[T]
    number: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


def _row(values: Sequence[Any], elements: Sequence[str] | None) -> Row:
    """A Row from selected columns; a plucked `raw` (a JSON array) becomes a dict again."""
    if not elements:
        return Row(*values)
    plucked = values[-1] or []
    raw = {k: v for k, v in zip(elements, plucked, strict=False) if v is not None}
    columns: list[Any] = [*values[:-1], raw]
    return Row(*columns)


def ref_key(reference: Any) -> str | None:
    """`Type/id` of a Reference (relative or absolute; version and contained ignored)."""
    if isinstance(reference, dict):
        reference = reference.get("reference")
    if not isinstance(reference, str) or reference.startswith("#"):
        return None
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) < 2 or not parts[-2][:1].isupper():
        return None
    return f"{parts[-2]}/{parts[-1]}"


class Records:
    """The stored record behind one `RecordView`, read section by section."""

    def __init__(self, session: Session, view: RecordView) -> None:
        self.session = session
        self.view = view
        self.connections: tuple[EhrConnection, ...] = view.connections
        self.sources = {c.id: c.source_name for c in view.connections}
        self.ids = list(self.sources)
        # The clinics: what they did not share is said per section (the patient's own
        # entries are a source too, but nothing is ever "not shared" by the patient).
        self.clinics = tuple(c for c in view.connections if not c.is_self)
        self.own_ids = frozenset(c.id for c in view.connections if c.is_self)

    # ---- queries -------------------------------------------------------------------------

    def _execute(self, query: Any) -> Any:
        """Run a column query below the ORM: rows are read-only values, not tracked objects."""
        return self.session.connection().execute(query)

    def _scope(self, query: Any, categories: Sequence[str]) -> Any:
        """Only this record's connections, these categories, nothing hidden, nothing unshared."""
        categories = [c for c in categories if self.may_see(c)]
        if not categories:
            return query.where(sa.false())
        conn = (
            FhirRecord.connection_id == self.ids[0]
            if len(self.ids) == 1
            else FhirRecord.connection_id.in_(self.ids)
        )
        cat = (
            FhirRecord.category == categories[0]
            if len(categories) == 1
            else FhirRecord.category.in_(categories)
        )
        visible = sa.or_(FhirRecord.status.is_(None), FhirRecord.status != HIDDEN)
        return query.where(conn, cat, visible)

    def rows(
        self,
        categories: Sequence[str],
        *,
        where: Iterable[sa.ColumnElement[bool]] = (),
        oldest_first: bool = False,
        limit: int | None = None,
        elements: Sequence[str] | None = None,
    ) -> list[Row]:
        """Visible rows of these categories, newest first (undated last).

        With `elements`, each row's `raw` holds only those top-level elements.
        """
        if not self.ids:
            return []
        raw = pluck(elements) if elements else FhirRecord.raw
        query = self._scope(sa.select(*_COLUMNS, raw), categories).where(*where)
        if oldest_first:
            query = query.order_by(FhirRecord.effective_at.asc().nulls_last(), FhirRecord.id)
        else:
            query = query.order_by(
                FhirRecord.effective_at.desc().nulls_last(), FhirRecord.id.desc()
            )
        if limit is not None:
            query = query.limit(limit)
        return [_row(r, elements) for r in self._execute(query)]

    def _ranked(self, categories: Sequence[str], where: Iterable[sa.ColumnElement[bool]]) -> Any:
        """Visible rows numbered newest first within each code (by name when uncoded)."""
        key = sa.func.coalesce(FhirRecord.code, FhirRecord.display)
        newest_first = (FhirRecord.effective_at.desc().nulls_last(), FhirRecord.id.desc())
        return (
            self._scope(
                sa.select(
                    FhirRecord.id,
                    sa.func.row_number()
                    .over(partition_by=key, order_by=newest_first)
                    .label("rank"),
                    sa.func.count().over(partition_by=key).label("n"),
                ),
                categories,
            )
            .where(*where)
            .subquery()
        )

    def recent_per_code(
        self,
        categories: Sequence[str],
        per_code: int,
        *,
        where: Iterable[sa.ColumnElement[bool]] = (),
        elements: Sequence[str] | None = None,
    ) -> list[tuple[Row, int]]:
        """The newest `per_code` rows of each code, newest first, each with its code's count."""
        if not self.ids:
            return []
        ranked = self._ranked(categories, where)
        raw = pluck(elements) if elements else FhirRecord.raw
        query = (
            sa.select(*_COLUMNS, raw, ranked.c.n)
            .join(ranked, ranked.c.id == FhirRecord.id)
            .where(ranked.c.rank <= per_code)
            .order_by(FhirRecord.effective_at.desc().nulls_last(), FhirRecord.id.desc())
        )
        rows: list[Any] = list(self._execute(query))
        return [(_row(r[:-1], elements), int(r[-1])) for r in rows]

    def latest_per_code(
        self,
        categories: Sequence[str],
        *,
        where: Iterable[sa.ColumnElement[bool]] = (),
        elements: Sequence[str] | None = None,
    ) -> list[tuple[Row, int]]:
        """The newest visible row of each code (by name when uncoded), and how many it has."""
        return self.recent_per_code(categories, 1, where=where, elements=elements)

    def count(
        self, categories: Sequence[str], *, where: Iterable[sa.ColumnElement[bool]] = ()
    ) -> int:
        if not self.ids:
            return 0
        query = self._scope(sa.select(sa.func.count()), categories).where(*where)
        return int(self.session.scalar(query) or 0)

    def resolve(self, pairs: Iterable[tuple[int, str | None]]) -> dict[tuple[int, str], Row]:
        """Referenced resources, by (connection id, `Type/id`): references stay within an EHR."""
        wanted: dict[tuple[int, str], set[str]] = {}
        for connection_id, key in pairs:
            if key and connection_id in self.sources:
                rtype, rid = key.split("/", 1)
                wanted.setdefault((connection_id, rtype), set()).add(rid)
        if not wanted:
            return {}
        # (connection, type, id) is the unique index: each lookup is an index probe.
        query = sa.select(*_COLUMNS, FhirRecord.raw).where(
            sa.or_(
                *(
                    sa.and_(
                        FhirRecord.connection_id == c,
                        FhirRecord.resource_type == rtype,
                        FhirRecord.resource_id.in_(sorted(ids)),
                    )
                    for (c, rtype), ids in wanted.items()
                )
            ),
            sa.or_(FhirRecord.status.is_(None), FhirRecord.status != HIDDEN),
        )
        found = {}
        for r in self._execute(query):
            row = Row(*r)
            if self.may_see(row.category):
                found[(row.connection_id, row.ref)] = row
        return found

    def record(self, record_id: int) -> Row | None:
        """One visible row of this record by its id (None when it is not this person's)."""
        if not self.ids:
            return None
        query = sa.select(*_COLUMNS, FhirRecord.raw).where(
            FhirRecord.id == record_id,
            FhirRecord.connection_id.in_(self.ids),
            sa.or_(FhirRecord.status.is_(None), FhirRecord.status != HIDDEN),
        )
        found = self._execute(query).first()
        row = Row(*found) if found else None
        return row if row and self.may_see(row.category) else None

    # ---- context -------------------------------------------------------------------------

    def may_see(self, category: str) -> bool:
        """Whether the viewer may see records of this category (every query checks)."""
        return any(self.view.allows(s) for s in CATEGORY_SECTIONS.get(category, ()))

    def source(self, row: Row) -> str:
        return self.sources.get(row.connection_id, "")

    @functools.cached_property
    def splits(self) -> frozenset[frozenset[int]]:
        """Pairs of records the patient said are not the same fact (portal.phr.merge)."""
        return splits_of(self.session, self.view.owner.id)

    def is_own(self, row: Row) -> bool:
        """Whether the patient entered this themselves (their "self" source)."""
        return row.connection_id in self.own_ids

    def section(self, section: str) -> SectionState:
        """What this record holds of a section, and why it may be incomplete."""
        from portal.phr.availability import section_state  # it builds on this class

        return section_state(self, section)

    def categories_of(self, section: str) -> tuple[str, ...]:
        """The stored categories that belong to a section."""
        return tuple(c for c, sections in CATEGORY_SECTIONS.items() if section in sections)

    @functools.cached_property
    def latest_runs(self) -> dict[int, SyncRun]:
        """Each clinic's most recent sync run (what it says of each section)."""
        return latest_runs(self.session, [c.id for c in self.clinics])

    def sources_with(
        self,
        categories: Sequence[str] | None,
        ids: Sequence[int] | None = None,
        *,
        where: Iterable[sa.ColumnElement[bool]] = (),
    ) -> frozenset[int]:
        """The connections (of `ids`, default all) with a visible record of these categories
        (None: of any category) matching `where`: one index probe each, in one query."""
        return self.sources_with_each([(categories, where)], ids)[0]

    def sources_with_each(
        self,
        asked: Sequence[tuple[Sequence[str] | None, Iterable[sa.ColumnElement[bool]]]],
        ids: Sequence[int] | None = None,
    ) -> list[frozenset[int]]:
        """`sources_with` for each (categories, where) asked, all in one query."""
        ids = self.ids if ids is None else [i for i in ids if i in self.sources]
        visible = sa.or_(FhirRecord.status.is_(None), FhirRecord.status != HIDDEN)
        probes: list[tuple[int, int]] = []  # (question, connection id) of each column
        columns = []
        for n, (categories, where) in enumerate(asked):
            if categories is not None:
                categories = [c for c in categories if self.may_see(c)]
                if not categories:
                    continue
            for connection_id in ids:
                conditions = [FhirRecord.connection_id == connection_id, visible, *where]
                if categories is not None:
                    conditions.append(FhirRecord.category.in_(categories))
                probes.append((n, connection_id))
                columns.append(sa.exists().where(*conditions).label(f"q{n}c{connection_id}"))
        found: list[set[int]] = [set() for _ in asked]
        if columns:
            answered = self._execute(sa.select(*columns)).one()
            for (n, connection_id), has in zip(probes, answered, strict=True):
                if has:
                    found[n].add(connection_id)
        return [frozenset(f) for f in found]

    def names(self, rows: Iterable[Row], *elements: str) -> dict[tuple[int, str], str]:
        """Names of the resources that `rows` reference in `elements` (one query for all)."""
        pairs = []
        for row in rows:
            for element in elements:
                for ref in _refs(row.raw, element):
                    pairs.append((row.connection_id, ref_key(ref)))
        return {key: display_name(r) for key, r in self.resolve(pairs).items()}

    def ref_name(self, names: dict[tuple[int, str], str], row: Row, reference: Any) -> str | None:
        """A reference's own display, else the name of what it points at."""
        if isinstance(reference, dict) and reference.get("display"):
            return tidy(plain_case(str(reference["display"])))
        key = ref_key(reference)
        return names.get((row.connection_id, key)) if key else None


def latest_runs(session: Session, connection_ids: Sequence[int]) -> dict[int, SyncRun]:
    """The most recent sync run of each of these connections (one query for all)."""
    if not connection_ids:
        return {}
    runs = session.scalars(_LATEST_RUNS, {"ids": list(connection_ids)})
    return {run.connection_id: run for run in runs}


# Each connection's most recent run (built once: every records page asks).
_LATEST_RUNS = sa.select(SyncRun).where(
    SyncRun.id.in_(
        sa.select(sa.func.max(SyncRun.id))
        .where(SyncRun.connection_id.in_(sa.bindparam("ids", expanding=True)))
        .group_by(SyncRun.connection_id)
    )
)


def splits_of(session: Session, account_id: int) -> frozenset[frozenset[int]]:
    """Pairs of records the person said are not the same fact."""
    rows = session.execute(
        sa.select(MergeSplit.record_a, MergeSplit.record_b).where(
            MergeSplit.account_id == account_id
        )
    )
    return frozenset(frozenset((a, b)) for a, b in rows)


def _refs(raw: dict[str, Any], element: str) -> list[Any]:
    """References at a dotted element path (lists walked)."""
    values: list[Any] = [raw]
    for part in element.split("."):
        nxt: list[Any] = []
        for value in values:
            got = value.get(part) if isinstance(value, dict) else None
            if isinstance(got, list):
                nxt.extend(got)
            elif got is not None:
                nxt.append(got)
        values = nxt
    return values


def display_name(row: Row) -> str:
    """What to call a referenced resource: a person's name, an organisation's, or its code."""
    raw = row.raw
    if row.resource_type in ("Practitioner", "Patient", "RelatedPerson"):
        name = person_name(raw.get("name"))
        if name:
            return tidy_person(name)
    if isinstance(raw.get("name"), str):
        return plain_case(str(raw["name"])) or row.resource_type
    if row.resource_type == "Medication":
        return medicine_name(concept_text(raw.get("code")) or row.display) or "Medicine"
    return tidy(row.display) or concept_text(raw.get("code")) or row.resource_type


def tidy_person(name: str) -> str:
    """Drop the digits Synthea appends to generated names (`Vito794` -> `Vito`)."""
    return " ".join(clean_name(part) or part for part in name.split())


# ---- the patient banner ---------------------------------------------------


@dataclass(frozen=True)
class Banner:
    name: str
    birth_date: str | None
    age: str | None
    sex: str | None
    died: str | None
    show: bool
    style_url: str | None


def banner(records: Records, fallback_name: str, today: date) -> Banner:
    """Who this record is about, from the clinics' Patient resources."""
    name = birth = age = sex = died = None
    rows = records.rows(
        ["patient"],
        where=[FhirRecord.resource_type == "Patient"],
        elements=("name", "birthDate", "gender", "deceasedDateTime", "deceasedBoolean"),
    )
    for row in rows:
        raw = row.raw
        name = name or (tidy_person(n) if (n := person_name(raw.get("name"))) else None)
        born = parse_date(raw.get("birthDate"))
        if born and birth is None:
            birth, age = date_text(raw.get("birthDate")), age_text(born, today)
            if raw.get("deceasedDateTime") or raw.get("deceasedBoolean"):
                age = None
                died = date_text(raw.get("deceasedDateTime")) or "date not recorded"
        sex = sex or (str(raw["gender"]).capitalize() if raw.get("gender") else None)
    connections = records.clinics
    style = next((c.smart_style_url for c in connections if c.smart_style_url), None)
    return Banner(
        name=name or fallback_name or "Your record",
        birth_date=birth,
        age=age,
        sex=sex,
        died=died,
        # The EHR that launched us may show its own banner; only then do we leave it out.
        show=not connections or any(c.need_patient_banner for c in connections),
        style_url=style,
    )
