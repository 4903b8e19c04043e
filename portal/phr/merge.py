"""One fact reported by several sources, shown once: "also reported by ...".

Rules, in order (both look across sources only: a clinic's own two prescriptions of one
medicine are two facts, and each source gives at most one row to a fact):
1. Identifiers: resources sharing an identifier (same system and value) state the same fact
   (an identifier a source gives to several of its own records identifies none of them).
2. Codes: otherwise, resources with the same code (same system and code; with no code, the
   same name ignoring case and spacing) state the same fact; for kinds that happen on a day
   (vaccines given), only on the same day.
Rows come newest first; the row shown is a clinic's when there is one (the newest; the
first-connected clinic on a tie), else the patient's own. Repeated facts (three episodes of
sinusitis at each clinic) pair up in order. Facts the patient split apart ("not the same")
are never folded again (until they say "these are the same", `join`). Conflicts (one source
says current, another over) are the caller's to word: each fact keeps all of its rows.

A page lists facts, never rows: `listing` folds a section, then pages the facts, so a page's
count and its items come from one list and cannot disagree.

The documented rules per kind (the `same` each page passes):
- readings and results: the same moment and value (`reading_moment`);
- vaccines: the same day; visits, procedures and reports: the same moment (`same_moment`);
- care plans and care teams: the same title and period (`same_period`); goals: the same start;
- clinicians and clinics: identifier (NPI), else the same kind and name (`same_kind`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.models import FhirRecord, MergeSplit
from portal.phr import facts, localtime
from portal.phr.records import Page, Records, Row, splits_of

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
D = TypeVar("D", bound="DataclassInstance")


@dataclass(frozen=True)
class Fact:
    """A fact and every row (one per source) that states it; `rows[0]` is shown."""

    rows: tuple[Row, ...]
    # Records the patient said are not this fact (with this fact's own): to undo that.
    apart: tuple[int, ...] = ()

    @property
    def row(self) -> Row:
        return self.rows[0]

    @property
    def others(self) -> tuple[Row, ...]:
        return self.rows[1:]

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(r.id for r in self.rows)

    def also(self, records: Records) -> tuple[str, ...]:
        """The other sources that state this fact, each once."""
        return tuple(dict.fromkeys(records.source(r) for r in self.others))


def identifiers(row: Row) -> list[str]:
    out = []
    for ident in row.raw.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("value"):
            out.append(f"id|{ident.get('system') or ''}|{ident['value']}")
    return out


def code_key(row: Row, name: str | None, *, by_name: bool = False) -> str | None:
    """The fact's code, or its normalised name when it has none (or when `by_name`)."""
    if row.code and not by_name:
        return f"code|{row.code_system or ''}|{row.code}"
    words = " ".join((name or row.display or "").split()).casefold()
    return f"name|{words}" if words else None


def fold(
    records: Records,
    rows: Sequence[Row],
    *,
    name: Callable[[Row], str | None] = lambda row: None,
    same: Callable[[Row], Hashable | None] | None = None,
    by_name: bool = False,
) -> list[Fact]:
    """`rows` (newest first) folded into facts, in the order of each fact's first row.

    `same`: what else must be equal for a code to match (the day of a vaccine; the moment and
    value of a reading); a row for which it is None matches by identifier only. `by_name`:
    match names, never codes (a clinic's code says only "healthcare provider").
    """
    splits = records.splits
    rank = {c.id: i for i, c in enumerate(records.connections)}
    order = {row.id: i for i, row in enumerate(rows)}
    # Clinics' rows first, newest first, the first-connected clinic first on a tie; then the
    # patient's own. So a fact is shown as a clinic has it, the patient's entry "also".
    ordered = sorted(
        rows,
        key=lambda r: (
            records.is_own(r),
            -(r.effective_at.timestamp() if r.effective_at else float("-inf")),
            rank.get(r.connection_id, 0),
            order[r.id],
        ),
    )
    # An identifier one source gives to several of its records (Synthea's claim group on
    # every bill) identifies none of them.
    seen: dict[tuple[int, str], int] = {}
    for row in rows:
        for key in set(identifiers(row)):
            seen[(row.connection_id, key)] = seen.get((row.connection_id, key), 0) + 1
    groups: list[list[Row]] = []
    by_key: dict[str, list[int]] = {}
    for row in ordered:
        keys = [k for k in identifiers(row) if seen[(row.connection_id, k)] == 1]
        code = code_key(row, name(row), by_name=by_name)
        if code is not None:
            also = same(row) if same else None
            if same is None or also is not None:
                keys.append(f"{code}|{also!r}")
        target = next(
            (
                g
                for key in keys
                for g in by_key.get(key, ())
                if all(r.connection_id != row.connection_id for r in groups[g])
                and all(frozenset((r.id, row.id)) not in splits for r in groups[g])
            ),
            None,
        )
        if target is None:
            target = len(groups)
            groups.append([])
        groups[target].append(row)
        for key in keys:
            if target not in by_key.setdefault(key, []):
                by_key[key].append(target)
    present = {row.id for row in rows}
    facts = [Fact(tuple(g), _apart(splits, g, present)) for g in groups]
    facts.sort(key=lambda f: min(order[r.id] for r in f.rows))
    return facts


def marked(records: Records, fact: Fact, item: D) -> D:
    """`item` (made of the fact's shown row) with the fact's other sources (`also`), the
    records folded into it (`merged`, to split them) and those kept apart (`apart`, to join)."""
    if not fact.others and not fact.apart:
        return item
    changes: dict[str, Any] = {"apart": fact.apart}
    if fact.others:
        changes |= {"also": fact.also(records), "merged": fact.ids}
    return replace(item, **changes)


def _apart(
    splits: frozenset[frozenset[int]], group: list[Row], present: set[int]
) -> tuple[int, ...]:
    ids = {r.id for r in group}
    partners = {i for pair in splits if pair & ids for i in pair if i in present}
    return tuple(sorted(partners | ids)) if partners - ids else ()


def split(session: Session, account_id: int, record_ids: Iterable[int]) -> int:
    """Never fold these records together again; returns how many pairs were new."""
    ids = sorted(set(record_ids))
    known = splits_of(session, account_id)
    added = 0
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            if frozenset((a, b)) not in known:
                session.add(MergeSplit(account_id=account_id, record_a=a, record_b=b))
                added += 1
    session.flush()
    return added


def join(session: Session, account_id: int, record_ids: Iterable[int]) -> int:
    """Undo `split`: these records may be folded together again; returns how many pairs."""
    ids = sorted(set(record_ids))
    result = session.execute(
        sa.delete(MergeSplit).where(
            MergeSplit.account_id == account_id,
            MergeSplit.record_a.in_(ids),
            MergeSplit.record_b.in_(ids),
        )
    )
    session.flush()
    return int(getattr(result, "rowcount", 0) or 0)


# What folding reads of each row beside its columns (identifiers; a reading's value).
KEY_ELEMENTS = ("identifier",)
VALUE_ELEMENTS = ("identifier", "valueQuantity", "valueString", "valueCodeableConcept", "component")


def listing(
    records: Records,
    categories: Sequence[str],
    number: int,
    size: int,
    build: Callable[[list[Fact]], list[T]],
    *,
    stored: str,
    where: Iterable[sa.ColumnElement[bool]] = (),
    elements: Sequence[str] | None = None,
    **fold_options: Any,
) -> Page[T]:
    """One page of a section's facts (newest first), its items made by `build`, and how many
    facts there are: the count and the items come from one folded list (stored as `stored`,
    see `portal.phr.facts`), and only the page's records are read, with `elements` (None:
    whole). `fold_options`: those of `section_facts`."""
    where = list(where)
    found = section_facts(records, stored, categories, where=where, **fold_options)
    pages = max(1, math.ceil(found.total / size))
    number = min(max(1, number), pages)
    chosen = found.slice((number - 1) * size, number * size)
    return Page(build(read(records, categories, chosen, elements)), number, size, found.total)


def section_facts(
    records: Records,
    stored: str,
    categories: Sequence[str],
    *,
    where: Sequence[sa.ColumnElement[bool]] = (),
    keys: Sequence[str] = KEY_ELEMENTS,
    name: Callable[[Row], str | None] = lambda row: None,
    same: Callable[[Row], Hashable | None] | None = None,
    by_name: bool = False,
    first: Callable[[Fact], bool] | None = None,
) -> facts.Folded:
    """A section's facts as a stored list named `stored` (folded reading only `keys` and the
    columns of every row, when the list is not stored yet); `first`: the facts it holds
    true of come first (else newest first)."""

    def compute() -> list[facts.Entry]:
        rows = records.rows(categories, where=where, elements=keys)
        found = fold(records, rows, name=name, same=same, by_name=by_name)
        if first is not None:
            found.sort(key=lambda f: not first(f))  # stable: newest first within each
        return entries(found)

    return facts.folded(records, stored, compute, (*categories, *where))


def entries(found: Iterable[Fact], data: Callable[[Fact], Any] | None = None) -> list[facts.Entry]:
    """Facts as stored entries (with what `data` says of each)."""
    return [facts.Entry(f.ids, f.apart, data(f) if data else None) for f in found]


def every(
    records: Records,
    categories: Sequence[str],
    build: Callable[[list[Fact]], list[T]],
    **options: Any,
) -> list[T]:
    """Every fact of a section as items (a list with no pages): its count is its length."""
    return listing(records, categories, 1, 1_000_000, build, **options).items


def read(
    records: Records,
    categories: Sequence[str],
    chosen: Sequence[facts.Entry],
    elements: Sequence[str] | None,
) -> list[Fact]:
    """Stored facts with their rows read (with `elements`; None: whole resources)."""
    ids = [i for e in chosen for i in e.ids]
    if not ids:
        return []
    found = {
        r.id: r for r in records.rows(categories, where=[FhirRecord.id.in_(ids)], elements=elements)
    }
    return [
        Fact(tuple(found[i] for i in e.ids if i in found), e.apart)
        for e in chosen
        if e.ids and e.ids[0] in found
    ]


def reread(
    records: Records, categories: Sequence[str], chosen: list[Fact], elements: Sequence[str] | None
) -> list[Fact]:
    """`chosen` with their rows read again with `elements` (None: whole resources)."""
    return read(records, categories, entries(chosen), elements)


def same_moment(row: Row) -> Hashable | None:
    """Visits, procedures, reports: the same moment (a row with none matches by id only)."""
    return row.effective_at.isoformat() if row.effective_at else None


def same_day(row: Row) -> Hashable | None:
    """Vaccines: the same day (the patient's)."""
    return localtime.day_of(row.effective_at) if row.effective_at else None


def same_period(row: Row) -> Hashable | None:
    """Care plans and care teams: the same period (start and end as sent)."""
    period = row.raw.get("period")
    if not isinstance(period, dict) or not (period.get("start") or period.get("end")):
        return None
    return (period.get("start"), period.get("end"))


NPI = "http://hl7.org/fhir/sid/us-npi"


def same_kind(row: Row) -> Hashable | None:
    """Clinicians and clinics: a clinician never folds with a clinic of the same name, nor
    with a namesake whose NPI is another (the same NPI folds as an identifier)."""
    npi = next(
        (
            str(i["value"])
            for i in row.raw.get("identifier") or []
            if isinstance(i, dict) and i.get("system") == NPI and i.get("value")
        ),
        None,
    )
    return (row.resource_type, npi)


def reading_moment(row: Row) -> Hashable | None:
    """What makes two readings the same one: the moment taken and the value as sent."""
    if row.effective_at is None:
        return None
    raw = row.raw
    values = [raw.get("valueQuantity"), raw.get("valueString"), raw.get("valueCodeableConcept")]
    values += [c.get("valueQuantity") for c in raw.get("component") or [] if isinstance(c, dict)]
    return (row.effective_at.isoformat(), repr(values))


def distinct(records: Records, rows: Sequence[Row]) -> tuple[list[Row], dict[int, tuple[str, ...]]]:
    """Readings (rows newest first) with each one taken once: the rows kept, and for each the
    other sources that sent the same reading."""
    facts = fold(records, rows, same=reading_moment)
    also = {f.row.id: f.also(records) for f in facts if f.others}
    return [f.row for f in facts], also
