"""One fact reported by several sources, shown once: "also reported by ...".

Rules, in order (both look across sources only: a clinic's own two prescriptions of one
medicine are two facts, and each source gives at most one row to a fact):
1. Identifiers: resources sharing an identifier (same system and value) state the same fact.
2. Codes: otherwise, resources with the same code (same system and code; with no code, the
   same name ignoring case and spacing) state the same fact; for kinds that happen on a day
   (vaccines given), only on the same day.
Rows come newest first; the row shown is a clinic's when there is one (the newest; the
first-connected clinic on a tie), else the patient's own. Repeated facts (three episodes of
sinusitis at each clinic) pair up in order. Facts the patient split apart ("not the same")
are never folded again. Conflicts (one source says current, another over) are the caller's
to word: each fact keeps all of its rows.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from portal.models import MergeSplit
from portal.phr.records import Records, Row, splits_of


@dataclass(frozen=True)
class Fact:
    """A fact and every row (one per source) that states it; `rows[0]` is shown."""

    rows: tuple[Row, ...]

    @property
    def row(self) -> Row:
        return self.rows[0]

    @property
    def others(self) -> tuple[Row, ...]:
        return self.rows[1:]

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(r.id for r in self.rows)


def identifiers(row: Row) -> list[str]:
    out = []
    for ident in row.raw.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("value"):
            out.append(f"id|{ident.get('system') or ''}|{ident['value']}")
    return out


def code_key(row: Row, name: str | None) -> str | None:
    """The fact's code, or its normalised name when it has none."""
    if row.code:
        return f"code|{row.code_system or ''}|{row.code}"
    words = " ".join((name or row.display or "").split()).casefold()
    return f"name|{words}" if words else None


def fold(
    records: Records,
    rows: Sequence[Row],
    *,
    name: Callable[[Row], str | None] = lambda row: None,
    same: Callable[[Row], Hashable | None] | None = None,
) -> list[Fact]:
    """`rows` (newest first) folded into facts, in the order of each fact's first row.

    `same`: what else must be equal for a code to match (the day of a vaccine; the moment and
    value of a reading); a row for which it is None matches by identifier only.
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
    groups: list[list[Row]] = []
    by_key: dict[str, list[int]] = {}
    for row in ordered:
        keys = identifiers(row)
        code = code_key(row, name(row))
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
    facts = [Fact(tuple(g)) for g in groups]
    facts.sort(key=lambda f: min(order[r.id] for r in f.rows))
    return facts


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
    also = {
        f.row.id: tuple(dict.fromkeys(records.source(r) for r in f.others))
        for f in facts
        if f.others
    }
    return [f.row for f in facts], also
