"""A record's sections folded into facts once, then read by pages as a query.

Folding a section (portal.phr.merge) is a pass over every one of its rows: for a record of
20,000 resources it was most of a page's time, and a page shows only 25 facts. So the folded
list (each fact as the ids of its records, the shown one first, those kept apart, and a few
values its page lists or filters it by) is stored, one `FactItem` per fact in order, under a
digest of everything the folding depends on: whose record and which connections at which data
version (any stored change bumps it), what the viewer may see, their units and time zone (a
vaccine's day; the words a list may hold), the records the patient split apart, the code that
folds, and the caller's parameters. A page then reads its slice by position (an index range,
never OFFSET) and only its facts' records.

When a sync ends, the landing pages it prepares fold every section and store the lists; a
change made otherwise (an own entry, a split) is folded by the first page that needs it. Any
change gives a new digest: nothing is invalidated in place; a name keeps its few latest lists.

Callers check access first (`portal.phr.access`); the lists are health data like the records
(ids only, plus what a page lists by) and are found only through a view of the record.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal import build
from portal.db import upsert_insert, utcnow
from portal.models import FactItem, FactList
from portal.phr import preferences
from portal.phr.records import Records

KEEP = 4  # lists kept per record and name: a few viewers (time zones, shared parts) at once


@dataclass(frozen=True)
class Entry:
    """One fact of a stored list."""

    ids: tuple[int, ...]  # the records stating it, the shown one first
    apart: tuple[int, ...] = ()  # records the patient said are not this fact (to join again)
    data: Any = None  # JSON: what the page lists or filters the fact by


@dataclass(frozen=True)
class Folded:
    """A stored list: how many facts, and their slices by position."""

    session: Session
    list_id: int | None
    total: int
    computed: tuple[Entry, ...] | None  # when this request worked it out

    def slice(self, start: int, stop: int) -> list[Entry]:
        start, stop = max(0, start), min(stop, self.total)
        if stop <= start:
            return []
        if self.computed is not None:
            return list(self.computed[start:stop])
        rows = self.session.connection().execute(
            sa.select(FactItem.records, FactItem.apart, FactItem.data)
            .where(
                FactItem.list_id == self.list_id,
                FactItem.position >= start,
                FactItem.position < stop,
            )
            .order_by(FactItem.position)
        )
        return [_entry(*row) for row in rows]

    def all(self) -> list[Entry]:
        return self.slice(0, self.total)

    def having(self, name: str, value: str) -> list[Entry]:
        """The facts whose data holds `value` under `name` (a lab test by its key), found by
        the database, not by reading every fact."""
        if self.computed is not None:
            return [
                e for e in self.computed if isinstance(e.data, dict) and e.data.get(name) == value
            ]
        rows = self.session.connection().execute(
            sa.select(FactItem.records, FactItem.apart, FactItem.data)
            .where(FactItem.list_id == self.list_id, FactItem.data[name].as_string() == value)
            .order_by(FactItem.position)
        )
        return [_entry(*row) for row in rows]

    def slices(self, spans: Sequence[tuple[int, int]]) -> list[list[Entry]]:
        """Several slices (start, stop) read in one query: a page showing a few of each of
        several groups (each kind of vital sign, each lab test)."""
        spans = [(max(0, a), min(b, self.total)) for a, b in spans]
        if self.computed is not None:
            return [list(self.computed[a:b]) if b > a else [] for a, b in spans]
        wanted = [(a, b) for a, b in spans if b > a]
        if not wanted:
            return [[] for _ in spans]
        rows = self.session.connection().execute(
            sa.select(FactItem.position, FactItem.records, FactItem.apart, FactItem.data)
            .where(
                FactItem.list_id == self.list_id,
                sa.or_(*(FactItem.position.between(a, b - 1) for a, b in wanted)),
            )
            .order_by(FactItem.position)
        )
        at = {pos: _entry(ids, apart, data) for pos, ids, apart, data in rows}
        return [[at[i] for i in range(a, b) if i in at] for a, b in spans]


def _entry(ids: list[int], apart: list[int] | None, data: Any) -> Entry:
    """An entry as its row stores it (JSON lists)."""
    return Entry(tuple(ids), tuple(apart or ()), data)


def folded(
    records: Records,
    name: str,
    compute: Callable[[], Sequence[Entry]],
    params: Sequence[object] = (),
) -> Folded:
    """The stored list `name` of this record (worked out by `compute` and stored when there is
    none for the current digest). `params`: what else the list depends on (filters)."""
    digest = _digest(records, name, params)
    known = _FOUND.setdefault(records, {})
    if digest in known:  # asked again by the same page (a count, then the items)
        return known[digest]
    known[digest] = _folded(records, name, digest, compute)
    return known[digest]


# Lists already found by a reader (one request's): its pages ask for some several times.
_FOUND: weakref.WeakKeyDictionary[Records, dict[str, Folded]] = weakref.WeakKeyDictionary()
# Every list stored for the record, by digest (id, total), read once per reader: a page asks
# for several lists, and there are only a few per name (KEEP).
_LISTS: weakref.WeakKeyDictionary[Records, dict[str, tuple[int, int]]] = weakref.WeakKeyDictionary()


def _stored_lists(records: Records) -> dict[str, tuple[int, int]]:
    if records not in _LISTS:
        rows = records.session.execute(
            sa.select(FactList.digest, FactList.id, FactList.total).where(
                FactList.account_id == records.view.owner.id
            )
        )
        _LISTS[records] = {digest: (list_id, total) for digest, list_id, total in rows}
    return _LISTS[records]


def _folded(
    records: Records, name: str, digest: str, compute: Callable[[], Sequence[Entry]]
) -> Folded:
    session = records.session
    account_id = records.view.owner.id
    found = (
        _stored_lists(records).get(digest)
        or session.execute(
            sa.select(FactList.id, FactList.total).where(  # stored since by a concurrent request
                FactList.account_id == account_id, FactList.name == name, FactList.digest == digest
            )
        ).first()
    )
    if found is not None:
        return Folded(session, found[0], found[1], None)
    entries = tuple(compute())
    _store(session, account_id, name, digest, entries)
    return Folded(session, None, len(entries), entries)


def _store(
    session: Session, account_id: int, name: str, digest: str, entries: Sequence[Entry]
) -> None:
    """Keep a worked-out list (in the caller's transaction), and drop this name's older lists
    beyond the latest few. Two requests storing the same list at once keep the first."""
    older = session.scalars(
        sa.select(FactList.id)
        .where(FactList.account_id == account_id, FactList.name == name)
        .order_by(FactList.id.desc())
        .offset(KEEP - 1)
    ).all()
    if older:
        session.execute(sa.delete(FactItem).where(FactItem.list_id.in_(older)))
        session.execute(sa.delete(FactList).where(FactList.id.in_(older)))
    header = session.execute(
        upsert_insert(session.get_bind().dialect.name, FactList.__table__)
        .values(
            account_id=account_id, name=name, digest=digest, total=len(entries), created_at=utcnow()
        )
        .on_conflict_do_nothing(index_elements=["account_id", "name", "digest"])
        .returning(FactList.id)
    ).scalar()
    if header is None:  # a concurrent twin stored it first: its list is the same
        return
    if entries:
        session.execute(
            sa.insert(FactItem),
            [
                {
                    "list_id": header,
                    "position": i,
                    "records": list(e.ids),
                    "apart": list(e.apart) or None,
                    "data": e.data,
                }
                for i, e in enumerate(entries)
            ],
        )


def _digest(records: Records, name: str, params: Sequence[object]) -> str:
    from portal.phr import snapshots  # it keys pages by the same record version

    view = records.view
    sections = "*" if view.sections is None else ",".join(sorted(view.sections))
    splits = sorted(tuple(sorted(pair)) for pair in records.splits)
    parts = [
        build.build_id(),  # the folding code itself: a deploy that changes a rule folds again
        name,
        snapshots.version(view),
        sections,
        preferences.current().key,  # units and time zone: a stored list may hold words
        repr(splits),
        *map(_param, params),
    ]
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def _param(value: object) -> str:
    """A parameter as text; a SQL condition with its values written in (never user text: the
    callers' filters are constants and validated choices)."""
    if isinstance(value, sa.ClauseElement):
        return str(value.compile(compile_kwargs={"literal_binds": True}))
    return repr(value)
