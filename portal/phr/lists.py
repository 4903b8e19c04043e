"""The record's lists in plain words: problems, medications, allergies, immunizations, procedures,
care plans and goals, care team and clinicians, coverage."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, TypeVar

from portal.models import FhirRecord
from portal.phr.facts import Entry, Folded
from portal.phr.facts import folded as stored_facts
from portal.phr.merge import (
    KEY_ELEMENTS,
    Fact,
    code_key,
    entries,
    every,
    fold,
    listing,
    marked,
    read,
    same_day,
    same_kind,
    same_moment,
    same_period,
    section_facts,
)
from portal.phr.names import (
    category_text,
    coded_as,
    first_capital,
    medicine_name,
    phone_text,
    plain_case,
)
from portal.phr.own import own_medicine_words
from portal.phr.records import Page, Records, Row, display_name
from portal.phr.words import (
    concept_text,
    date_text,
    dosage_text,
    first_code,
    lab_name,
    period_text,
    quantity_text,
    range_text,
    status_words,
    when_text,
)

# ---- problems ----------------------------------------------------------------------------

ACTIVE_PROBLEM = ("active", "recurrence", "relapse")
PAST_PROBLEM = ("inactive", "remission", "resolved")
PROBLEM_SECTIONS = ("problems", "diagnoses")
PAGE_SIZE = 50  # problems or medicines one page renders (a long record's list is paged)
SEVERITY_WORDS = {"24484000": "Severe", "6736007": "Moderate", "255604002": "Mild"}


@dataclass(frozen=True)
class Problem:
    id: int
    name: str
    status: str
    active: bool
    since: str | None
    ended: str | None
    severity: str | None
    kind: str  # "Health problem" | "Diagnosis at a visit"
    note: str | None
    source: str
    also: tuple[str, ...] = ()  # other sources that report the same fact
    conflict: str | None = None  # where those sources disagree, in words
    merged: tuple[int, ...] = ()  # the records folded into this item (to split them again)
    apart: tuple[int, ...] = ()  # records the patient said are not this one (to join again)


def problems(
    records: Records, show: str = "active", limit: int | None = None, start: int = 0
) -> list[Problem]:
    """Health problems and visit diagnoses: `active`, `past` or `all` (`limit` of them from
    position `start`); the same problem from several sources once (see portal.phr.merge),
    shown as active when any source says so. Only the shown problems' records are read."""
    found = _problem_facts(records, show)
    chosen = found.slice(start, found.total if limit is None else start + limit)
    facts = read(records, PROBLEM_SECTIONS, chosen, None)
    return folded_facts(
        records, facts, lambda r: _problem(records, r), "active", ("current", "over")
    )


def problem_page(
    records: Records, show: str = "active", page: int = 1, size: int = PAGE_SIZE
) -> Page[Problem]:
    """One page of `problems(records, show)`, and how many there are."""
    total = problem_count(records, show)
    number = min(max(1, page), max(1, -(-total // size)))
    return Page(problems(records, show, size, (number - 1) * size), number, size, total)


def problem_count(records: Records, show: str = "active") -> int:
    """How many problems `problems(records, show)` lists (read from the stored facts)."""
    return _problem_facts(records, show).total


def _problem_facts(records: Records, show: str) -> Folded:
    return _chosen(records, "problems", PROBLEM_SECTIONS, ("identifier",), _problem_active, show)


def _problem_active(row: Row) -> bool:
    return row.status not in PAST_PROBLEM


def _problem(records: Records, row: Row) -> Problem:
    raw = row.raw
    status = row.status
    return Problem(
        id=row.id,
        name=concept_text(raw.get("code")) or row.display or "Unnamed problem",
        status=status_words(status) or "Status not recorded",
        active=_problem_active(row),
        since=when_text(raw, "onsetDateTime", "onsetPeriod", "onsetString", "recordedDate")
        or (str(raw["onsetString"]) if raw.get("onsetString") else None),
        ended=when_text(raw, "abatementDateTime", "abatementPeriod")
        or (str(raw["abatementString"]) if raw.get("abatementString") else None),
        severity=SEVERITY_WORDS.get(first_code(raw.get("severity")) or "")
        or concept_text(raw.get("severity")),
        kind=_problem_kind(row),
        note=_note(raw),
        source=records.source(row),
    )


def _problem_kind(row: Row) -> str:
    if row.category == "diagnoses":
        return "Diagnosis at a visit"
    categories = [
        c.get("code") for cat in row.raw.get("category") or [] for c in cat.get("coding") or []
    ]
    return "Symptom or concern" if "health-concern" in categories else "Health problem"


def _note(raw: dict[str, Any]) -> str | None:
    notes = [str(n["text"]) for n in raw.get("note") or [] if isinstance(n, dict) and n.get("text")]
    return " ".join(notes) if notes else None


# ---- medications -------------------------------------------------------------------------

CURRENT_MEDICATION = ("active", "on-hold", "intended", "draft", "unknown")


@dataclass(frozen=True)
class Medication:
    id: int
    name: str
    status: str
    current: bool
    dosage: str | None
    started: str | None
    prescriber: str | None
    reason: str | None
    note: str | None
    source: str
    also: tuple[str, ...] = ()  # other sources that report the same fact
    conflict: str | None = None  # where those sources disagree, in words
    merged: tuple[int, ...] = ()  # the records folded into this item (to split them again)
    # How the clinic coded it ("RxNorm: 200 ACTUAT Albuterol ..."), shown under "Details".
    details: tuple[str, ...] = ()
    # The patient's own entry: "You take it since ..." in place of "Prescribed ... by".
    own: str | None = None
    apart: tuple[int, ...] = ()  # records the patient said are not this one (to join again)


def medications(
    records: Records, show: str = "current", limit: int | None = None, start: int = 0
) -> list[Medication]:
    """Medicines prescribed or taken: `current`, `past` or `all` (`limit` of them from
    position `start`); the same medicine from several sources once, current when any source
    says so. Only the shown medicines' records are read."""
    found = _medication_facts(records, show)
    chosen = found.slice(start, found.total if limit is None else start + limit)
    facts = read(records, ["medications"], chosen, None)
    rows = [r for f in facts for r in f.rows]
    names = records.names(
        rows, "medicationReference", "requester", "informationSource", "reasonReference"
    )
    return folded_facts(
        records,
        facts,
        lambda row: _medication(records, names, row),
        "current",
        ("current", "stopped"),
    )


def medication_page(
    records: Records, show: str = "current", page: int = 1, size: int = PAGE_SIZE
) -> Page[Medication]:
    """One page of `medications(records, show)`, and how many there are."""
    total = medication_count(records, show)
    number = min(max(1, page), max(1, -(-total // size)))
    return Page(medications(records, show, size, (number - 1) * size), number, size, total)


def medication_count(records: Records, show: str = "current") -> int:
    """How many medicines `medications(records, show)` lists (read from the stored facts)."""
    return _medication_facts(records, show).total


def _medication_facts(records: Records, show: str) -> Folded:
    def fold_name(rows: list[Row]) -> Callable[[Row], str | None]:
        names = records.names(rows, "medicationReference")
        return lambda row: (
            concept_text(row.raw.get("medicationCodeableConcept"))
            or records.ref_name(names, row, row.raw.get("medicationReference"))
        )

    return _chosen(
        records,
        "medications",
        ["medications"],
        ("identifier", "medicationCodeableConcept", "medicationReference"),
        _medication_current,
        show,
        fold_name=fold_name,
    )


def _medication_current(row: Row) -> bool:
    return row.status is None or row.status in CURRENT_MEDICATION


def _medication(records: Records, names: dict[tuple[int, str], str], row: Row) -> Medication:
    """One medicine as one source lists it."""
    raw = row.raw
    coded = raw.get("medicationCodeableConcept")
    name = medicine_name(concept_text(coded)) or records.ref_name(
        names, row, raw.get("medicationReference")
    )
    dosages = [d for d in (dosage_text(x) for x in raw.get("dosageInstruction") or []) if d]
    dosages += [d for d in (dosage_text(x) for x in raw.get("dosage") or []) if d]
    reasons = [concept_text(x) for x in raw.get("reasonCode") or []]
    reasons += [records.ref_name(names, row, x) for x in raw.get("reasonReference") or []]
    who = raw.get("requester") or raw.get("informationSource")
    current = _medication_current(row)
    own = own_medicine_words(raw, current) if records.is_own(row) else None
    return Medication(
        id=row.id,
        name=name or medicine_name(row.display) or "Unnamed medicine",
        status=status_words(row.status) or "Status not recorded",
        current=current,
        dosage="; ".join(dosages) or None,
        started=when_text(raw, "authoredOn", "effectiveDateTime", "effectivePeriod"),
        prescriber=records.ref_name(names, row, who) if who and own is None else None,
        reason=", ".join(r for r in reasons if r) or None,
        note=_note(raw),
        source=records.source(row),
        details=coded_as(coded),
        own=own,
    )


# ---- the same fact from several sources ----------------------------------------------------

Item = TypeVar("Item", "Problem", "Medication", "Allergy", "Immunization")


def folded(
    records: Records,
    rows: list[Row],
    build: Callable[[Row], Item],
    flag: str,
    words: tuple[str, str],
    *,
    name: Callable[[Row], str | None] | None = None,
    same: Callable[[Row], date | None] | None = None,
) -> list[Item]:
    """Items of `rows`, each fact once (portal.phr.merge): the shown source's item, with the
    other sources in `also`, and, where they disagree on `flag` (e.g. current), a conflict
    in words (`words`: how a yes and a no are said)."""
    facts = fold(records, rows, name=name or (lambda row: None), same=same)
    return folded_facts(records, facts, build, flag, words)


def folded_facts(
    records: Records,
    facts: list[Fact],
    build: Callable[[Row], Item],
    flag: str,
    words: tuple[str, str],
) -> list[Item]:
    """Items of folded facts (see `folded`)."""
    out = []
    for fact in facts:
        members = [build(row) for row in fact.rows]
        item = marked(records, fact, members[0])
        if len(members) > 1:
            changes: dict[str, Any] = {flag: any(getattr(m, flag) for m in members)}
            item = replace(item, conflict=disagreement(members, flag, words), **changes)
        out.append(item)
    return out


def disagreement(members: Sequence[Any], flag: str, words: tuple[str, str]) -> str | None:
    """ "Riverside General Hospital says current; you say stopped." (None when all agree)."""
    said = {m.source: words[0] if getattr(m, flag) else words[1] for m in members}
    if len(set(said.values())) < 2:
        return None
    parts = [
        f"you say {word}" if source == "You" else f"{source} says {word}"
        for source, word in said.items()
    ]
    text = "; ".join(parts) + "."
    return text[0].upper() + text[1:]


SHOWN = ("current", "past", "all")  # the lists a page may show ("active" is "current")


def _chosen(
    records: Records,
    stored: str,
    categories: Sequence[str],
    keys: Sequence[str],
    flag: Callable[[Row], bool],
    show: str,
    *,
    fold_name: Callable[[list[Row]], Callable[[Row], str | None]] | None = None,
    order: Callable[[Fact], Any] | None = None,
    **fold_options: Any,
) -> Folded:
    """The stored facts of a list page (portal.phr.facts) that `show` shows (`active`/`current`:
    those any source says are; `past`: the rest; else all), in order. When the section is
    not stored yet it is folded once (reading only `keys` of its rows), each fact with
    whether any of its sources says `flag`, in the page's order (`order`, else newest first),
    and the three lists are stored together, so each is counted and sliced by position."""
    worked: list[list[Entry]] = []

    def every() -> list[Entry]:
        if not worked:
            rows = records.rows(categories, elements=keys)
            name = fold_name(rows) if fold_name else (lambda row: None)
            found = fold(records, rows, name=name, **fold_options)
            if order is not None:
                found.sort(key=order)
            worked.append(entries(found, lambda f: {"flag": any(flag(r) for r in f.rows)}))
        return worked[0]

    def variant(which: str) -> Callable[[], list[Entry]]:
        if which == "current":
            return lambda: [e for e in every() if e.data["flag"]]
        if which == "past":
            return lambda: [e for e in every() if not e.data["flag"]]
        return every

    which = "current" if show in ("active", "current") else show if show in SHOWN else "all"
    wanted = stored_facts(records, f"{stored}-{which}", variant(which), categories)
    if worked:  # folded now: the other filters' lists are stored with it
        for other in SHOWN:
            stored_facts(records, f"{stored}-{other}", variant(other), categories)
    return wanted


# ---- allergies ---------------------------------------------------------------------------

CRITICALITY = {
    "high": "High risk",
    "low": "Low risk",
    "unable-to-assess": "Risk not known",
}
REACTION_SEVERITY = {"mild": "Mild", "moderate": "Moderate", "severe": "Severe"}
ALLERGY_CATEGORY = {
    "food": "Food",
    "medication": "Medicine",
    "environment": "Environment",
    "biologic": "Biologic",
}


@dataclass(frozen=True)
class Reaction:
    what: str
    severity: str | None
    severe: bool
    when: str | None
    note: str | None


@dataclass(frozen=True)
class Allergy:
    id: int
    name: str
    criticality: str | None
    high_risk: bool
    kinds: str | None
    type: str | None
    status: str
    active: bool
    verification: str | None
    recorded: str | None
    reactions: tuple[Reaction, ...]
    note: str | None
    source: str
    also: tuple[str, ...] = ()  # other sources that report the same fact
    conflict: str | None = None  # where those sources disagree, in words
    merged: tuple[int, ...] = ()  # the records folded into this item (to split them again)
    apart: tuple[int, ...] = ()  # records the patient said are not this one (to join again)


def allergies(records: Records, show: str = "all") -> list[Allergy]:
    """Allergies and intolerances, active ones (high risk first) before the rest (`current`:
    only those any source says are active); the same allergy from several sources once,
    with any disagreement on whether it is current."""

    def order(fact: Fact) -> tuple[bool, bool, str]:
        shown = fact.row
        active = any(_allergy_active(r) for r in fact.rows)
        return (not active, shown.raw.get("criticality") != "high", _allergy_name(shown).lower())

    chosen = _chosen(
        records,
        "allergies",
        ["allergies"],
        ("identifier", "code", "criticality"),
        _allergy_active,
        show,
        order=order,
    ).all()
    return folded_facts(
        records,
        read(records, ["allergies"], chosen, None),
        lambda row: _allergy(records, row),
        "active",
        ("current", "resolved"),
    )


def _allergy_active(row: Row) -> bool:
    return row.status in (None, "active", "confirmed", "unconfirmed")


def _allergy_name(row: Row) -> str:
    return concept_text(row.raw.get("code")) or row.display or "Unnamed allergy"


def _allergy(records: Records, row: Row) -> Allergy:
    """One allergy as one source lists it."""
    raw = row.raw
    reactions = []
    for reaction in raw.get("reaction") or []:
        if not isinstance(reaction, dict):
            continue
        what = ", ".join(
            t for t in (concept_text(m) for m in reaction.get("manifestation") or []) if t
        )
        severity = reaction.get("severity")
        reactions.append(
            Reaction(
                what=what or reaction.get("description") or "Reaction not described",
                severity=REACTION_SEVERITY.get(str(severity)) if severity else None,
                severe=severity == "severe",
                when=date_text(reaction.get("onset")),
                note=reaction.get("description") if what else None,
            )
        )
    criticality = raw.get("criticality")
    verification = first_code(raw.get("verificationStatus"))
    status = row.status
    return Allergy(
        id=row.id,
        name=_allergy_name(row),
        criticality=CRITICALITY.get(str(criticality)) if criticality else None,
        high_risk=criticality == "high",
        kinds=", ".join(ALLERGY_CATEGORY.get(str(c), str(c)) for c in raw["category"])
        if isinstance(raw.get("category"), list)
        else None,
        type=(str(raw["type"]).capitalize() if raw.get("type") else None),
        status=status_words(status) or "Status not recorded",
        active=_allergy_active(row),
        verification={
            "unconfirmed": "Not confirmed",
            "confirmed": "Confirmed",
            "refuted": "Ruled out",
        }.get(verification or ""),
        recorded=when_text(raw, "recordedDate", "onsetDateTime"),
        reactions=tuple(reactions),
        note=_note(raw),
        source=records.source(row),
    )


# ---- immunizations -----------------------------------------------------------------------


@dataclass(frozen=True)
class Immunization:
    id: int
    name: str
    date: str | None
    given: bool
    status: str
    dose: str | None
    reason_not_given: str | None
    place: str | None
    source: str
    also: tuple[str, ...] = ()  # other sources that report the same fact
    conflict: str | None = None  # where those sources disagree, in words
    merged: tuple[int, ...] = ()  # the records folded into this item (to split them again)
    apart: tuple[int, ...] = ()  # records the patient said are not this one (to join again)


IMMUNIZATION_ELEMENTS = (
    "vaccineCode",
    "occurrenceDateTime",
    "occurrenceString",
    "protocolApplied",
    "statusReason",
    "location",
)


def immunizations(records: Records, page: int = 1, size: int = 50) -> Page[Immunization]:
    """Vaccines given (and recorded as not given), newest first; one dose reported by several
    sources (same vaccine, same day) once, and counted once."""
    return listing(
        records,
        ["immunizations"],
        page,
        size,
        lambda facts: immunization_facts(records, facts),
        stored="immunizations",
        elements=IMMUNIZATION_ELEMENTS,
        same=same_day,
    )


def latest_immunizations(records: Records, limit: int) -> tuple[list[Immunization], int]:
    """The latest dose of each vaccine given (newest first), and how many immunizations the
    immunizations page lists (each dose once)."""
    listed = section_facts(records, "immunizations", ["immunizations"], same=same_day)  # its page's
    chosen = read(
        records, ["immunizations"], _latest_doses(records).slice(0, limit), IMMUNIZATION_ELEMENTS
    )
    return immunization_facts(records, chosen), listed.total


def immunization_places(records: Records) -> dict[int, int]:
    """Where the latest dose of each vaccine is in the immunizations list (0 first), by the
    id of the item shown: its page is place // page size + 1."""
    return {e.ids[0]: int(e.data) for e in _latest_doses(records).all()}


def _latest_doses(records: Records) -> Folded:
    def compute() -> list[Entry]:
        rows = records.rows(["immunizations"], elements=KEY_ELEMENTS)
        latest: dict[str, tuple[int, Fact]] = {}
        for place, fact in enumerate(fold(records, rows, same=same_day)):  # as its page lists
            if any(r.status != "not-done" for r in fact.rows):
                latest.setdefault(code_key(fact.row, None) or f"row|{fact.row.id}", (place, fact))
        return [Entry(f.ids, f.apart, place) for place, f in latest.values()]

    return stored_facts(records, "immunizations-latest", compute, ("immunizations",))


def immunization_items(records: Records, rows: list[Row]) -> list[Immunization]:
    """Vaccines of `rows`; one dose reported by several sources (same vaccine, same day) once."""
    return immunization_facts(records, fold(records, rows, same=same_day))


def immunization_facts(records: Records, facts: list[Fact]) -> list[Immunization]:
    names = records.names([r for f in facts for r in f.rows], "location", "performer.actor")
    return folded_facts(
        records,
        facts,
        lambda row: _immunization(records, names, row),
        "given",
        ("given", "not given"),
    )


def _immunization(records: Records, names: dict[tuple[int, str], str], row: Row) -> Immunization:
    raw = row.raw
    doses = [
        p.get("doseNumberPositiveInt") or p.get("doseNumberString")
        for p in raw.get("protocolApplied") or []
        if isinstance(p, dict)
    ]
    given = row.status != "not-done"
    return Immunization(
        id=row.id,
        name=concept_text(raw.get("vaccineCode")) or row.display or "Unnamed vaccine",
        date=when_text(raw, "occurrenceDateTime")
        or (str(raw["occurrenceString"]) if raw.get("occurrenceString") else None),
        given=given,
        status="Given" if given else "Not given",
        dose=f"Dose {doses[0]}" if doses and doses[0] else None,
        reason_not_given=None if given else concept_text(raw.get("statusReason")),
        place=records.ref_name(names, row, raw.get("location")) if raw.get("location") else None,
        source=records.source(row),
    )


# ---- procedures --------------------------------------------------------------------------


@dataclass(frozen=True)
class Procedure:
    id: int
    name: str
    date: str | None
    status: str
    reason: str | None
    body_site: str | None
    outcome: str | None
    source: str
    also: tuple[str, ...] = ()  # other sources that report the same fact
    merged: tuple[int, ...] = ()  # the records folded into this item (to split them again)
    apart: tuple[int, ...] = ()  # records the patient said are not this one (to join again)


def procedure_items(records: Records, facts: list[Fact]) -> list[Procedure]:
    names = records.names([f.row for f in facts], "reasonReference")
    items = []
    for fact in facts:
        row = fact.row
        raw = row.raw
        reasons = [concept_text(x) for x in raw.get("reasonCode") or []]
        reasons += [records.ref_name(names, row, x) for x in raw.get("reasonReference") or []]
        items.append(
            Procedure(
                id=row.id,
                name=concept_text(raw.get("code")) or row.display or "Unnamed procedure",
                date=when_text(raw, "performedDateTime", "performedPeriod")
                or (str(raw["performedString"]) if raw.get("performedString") else None),
                status=status_words(row.status) or "Status not recorded",
                reason=", ".join(r for r in reasons if r) or None,
                body_site=concept_text(raw.get("bodySite")),
                outcome=concept_text(raw.get("outcome")),
                source=records.source(row),
            )
        )
        items[-1] = marked(records, fact, items[-1])
    return items


def procedures(records: Records, page: int, size: int = 25) -> Page[Procedure]:
    """Procedures newest first; one reported by several sources (same code, same moment) once."""
    return listing(
        records,
        ["procedures"],
        page,
        size,
        lambda facts: procedure_items(records, facts),
        stored="procedures",
        same=same_moment,
    )


# ---- care plans and goals ------------------------------------------------------------------

ACTIVE_PLAN = ("active", "draft", "on-hold")


@dataclass(frozen=True)
class Activity:
    what: str
    status: str | None


@dataclass(frozen=True)
class CarePlan:
    id: int
    title: str
    status: str
    active: bool
    period: str | None
    addresses: str | None
    activities: tuple[Activity, ...]
    description: str | None
    source: str
    also: tuple[str, ...] = ()  # other sources that report the same fact
    merged: tuple[int, ...] = ()  # the records folded into this item (to split them again)
    apart: tuple[int, ...] = ()  # records the patient said are not this one (to join again)


@dataclass(frozen=True)
class GoalTarget:
    what: str | None
    target: str | None
    due: str | None


@dataclass(frozen=True)
class Goal:
    id: int
    description: str
    status: str
    achievement: str | None
    active: bool
    start: str | None
    targets: tuple[GoalTarget, ...]
    addresses: str | None
    source: str
    also: tuple[str, ...] = ()  # other sources that report the same fact
    merged: tuple[int, ...] = ()  # the records folded into this item (to split them again)
    apart: tuple[int, ...] = ()  # records the patient said are not this one (to join again)


def care_plans(records: Records, show: str = "all") -> list[CarePlan]:
    """Every care plan: `active` (and drafts, on hold), `past`, or `all` (active first)."""
    return care_plan_page(records, show, 1, 1_000_000).items


def care_plan_page(
    records: Records, show: str = "all", page: int = 1, size: int = 25
) -> Page[CarePlan]:
    """One page of care plans (see `care_plans`); one plan at several sources (same title,
    same period) once, active when any of them says so."""
    found = _chosen(
        records,
        "careplans",
        ["careplans"],
        ("identifier", "title", "category", "period"),
        lambda row: row.status in ACTIVE_PLAN,
        show,
        fold_name=lambda _rows: plan_title,
        same=same_period,
        by_name=True,
        order=lambda fact: fact.row.status not in ACTIVE_PLAN,  # active first, newest first
    )
    number = min(max(1, page), max(1, -(-found.total // size)))
    chosen = found.slice((number - 1) * size, number * size)
    elements = ("title", "category", "activity", "period", "addresses", "description")
    plans = _care_plans(records, read(records, ["careplans"], chosen, elements))
    return Page(plans, number, size, found.total)


def plan_title(row: Row) -> str | None:
    """A care plan's title; Synthea gives none, only its category ("Asthma self management")."""
    raw = row.raw
    categories = [category_text(c) for c in raw.get("category") or []]
    title = raw.get("title") or next((c for c in categories if c), None)
    return str(title) if title else None


def _care_plans(records: Records, facts: list[Fact]) -> list[CarePlan]:
    names = records.names([f.row for f in facts], "addresses")
    items = []
    for fact in facts:
        row = fact.row
        raw = row.raw
        activities = []
        seen = set()
        for activity in raw.get("activity") or []:
            detail = activity.get("detail") if isinstance(activity, dict) else None
            what = concept_text(detail.get("code")) if isinstance(detail, dict) else None
            what = what or (detail.get("description") if isinstance(detail, dict) else None)
            if not what and isinstance(activity, dict):
                what = activity.get("reference", {}).get("display")
            if what and what not in seen:  # Synthea repeats activities
                seen.add(what)
                status = detail.get("status") if isinstance(detail, dict) else None
                activities.append(Activity(str(what), status_words(status)))
        addresses = [records.ref_name(names, row, x) for x in raw.get("addresses") or []]
        item = CarePlan(
            id=row.id,
            title=plan_title(row) or "Care plan",
            status=status_words(row.status) or "Status not recorded",
            active=row.status in ACTIVE_PLAN,
            period=first_capital(period_text(raw.get("period"))),
            addresses=", ".join(a for a in addresses if a) or None,
            activities=tuple(activities),
            description=raw.get("description"),
            source=records.source(row),
        )
        items.append(marked(records, fact, item))
    return items


def goals(records: Records) -> list[Goal]:
    """Goals, active first; one set at several sources (same description, same start) once."""
    return every(
        records,
        ["goals"],
        lambda facts: _goals(records, facts),
        stored="goals",
        keys=("identifier", "description", "startDate"),
        name=lambda row: concept_text(row.raw.get("description")),
        same=lambda row: row.raw.get("startDate") or "",
        by_name=True,
    )


def _goals(records: Records, facts: list[Fact]) -> list[Goal]:
    names = records.names([f.row for f in facts], "addresses")
    items = []
    for fact in facts:
        row = fact.row
        raw = row.raw
        targets = []
        for target in raw.get("target") or []:
            if not isinstance(target, dict):
                continue
            value = (
                quantity_text(target.get("detailQuantity"))
                or range_text(target.get("detailRange"))
                or concept_text(target.get("detailCodeableConcept"))
                or target.get("detailString")
            )
            due = date_text(target.get("dueDate"))
            measure = concept_text(target.get("measure"))
            what = lab_name(measure) if measure else None
            if what or value or due:
                targets.append(GoalTarget(what, value, due))
        lifecycle = raw.get("lifecycleStatus") or row.status
        addresses = [records.ref_name(names, row, x) for x in raw.get("addresses") or []]
        item = Goal(
            id=row.id,
            description=lab_name(concept_text(raw.get("description")) or row.display or "Goal"),
            status=status_words(lifecycle) or "Status not recorded",
            achievement=status_words(first_code(raw.get("achievementStatus"))),
            active=lifecycle in ("proposed", "planned", "accepted", "active", None),
            start=when_text(raw, "startDate"),
            targets=tuple(targets),
            addresses=", ".join(a for a in addresses if a) or None,
            source=records.source(row),
        )
        items.append(marked(records, fact, item))
    items.sort(key=lambda g: not g.active)
    return items


# ---- care team and clinicians ------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    name: str
    role: str | None
    organisation: str | None


@dataclass(frozen=True)
class CareTeam:
    id: int
    name: str
    status: str
    period: str | None
    reason: str | None
    members: tuple[Member, ...]
    source: str
    also: tuple[str, ...] = ()  # other sources that report the same fact
    merged: tuple[int, ...] = ()  # the records folded into this item (to split them again)
    apart: tuple[int, ...] = ()  # records the patient said are not this one (to join again)


@dataclass(frozen=True)
class Contact:
    id: int
    name: str
    kind: str  # "Clinician" | "Clinic"
    phone: str | None
    address: str | None
    source: str
    also: tuple[str, ...] = ()  # other sources that report the same fact
    merged: tuple[int, ...] = ()  # the records folded into this item (to split them again)
    apart: tuple[int, ...] = ()  # records the patient said are not this one (to join again)


def care_teams(records: Records) -> list[CareTeam]:
    """Care teams; one known at several sources (same name, same period) once."""
    return every(
        records,
        ["careteam"],
        lambda facts: _care_teams(records, facts),
        stored="careteams",
        keys=("identifier", "name", "category", "period"),
        name=lambda row: row.raw.get("name") or concept_text(row.raw.get("category")),
        same=same_period,
        by_name=True,
    )


def _care_teams(records: Records, facts: list[Fact]) -> list[CareTeam]:
    rows = [f.row for f in facts]
    names = records.names(rows, "participant.member", "participant.onBehalfOf", "reasonReference")
    items = []
    for fact in facts:
        row = fact.row
        raw = row.raw
        members = []
        for p in raw.get("participant") or []:
            if not isinstance(p, dict):
                continue
            member = records.ref_name(names, row, p.get("member")) if p.get("member") else None
            org = records.ref_name(names, row, p.get("onBehalfOf")) if p.get("onBehalfOf") else None
            role = concept_text(p.get("role"))
            if member or role:
                members.append(Member(member or "Someone from your care team", role, org))
        reasons = [concept_text(x) for x in raw.get("reasonCode") or []]
        reasons += [records.ref_name(names, row, x) for x in raw.get("reasonReference") or []]
        item = CareTeam(
            id=row.id,
            name=str(raw.get("name") or category_text(raw.get("category")) or "Care team"),
            status=status_words(row.status) or "Status not recorded",
            period=first_capital(period_text(raw.get("period"))),
            reason=", ".join(r for r in reasons if r) or None,
            members=tuple(members),
            source=records.source(row),
        )
        items.append(marked(records, fact, item))
    return items


def contacts(records: Records) -> list[Contact]:
    """Clinicians and clinics named in the record (the directory a patient can call)."""
    items = every(
        records,
        ["directory"],
        lambda facts: _contacts(records, facts),
        stored="contacts",
        where=[FhirRecord.resource_type.in_(("Practitioner", "Organization"))],
        keys=("identifier", "name"),
        name=display_name,
        same=same_kind,
        by_name=True,
    )
    items.sort(key=lambda c: (c.kind, c.name.lower()))
    return items


def _contacts(records: Records, facts: list[Fact]) -> list[Contact]:
    """Clinicians (the same NPI, else the same name) and clinics (the same name) once each."""
    items = []
    for fact in facts:
        row = fact.row
        raw = row.raw
        phones = [
            phone_text(str(t["value"]))
            for t in raw.get("telecom") or []
            if isinstance(t, dict) and t.get("system") == "phone" and t.get("value")
        ]
        address = None
        for a in raw.get("address") or []:
            if isinstance(a, dict):
                named = [*(a.get("line") or []), a.get("city")]  # state and postcode as sent
                parts = [
                    *(plain_case(str(p)) for p in named if p),
                    a.get("state"),
                    a.get("postalCode"),
                ]
                address = ", ".join(str(p) for p in parts if p) or None
                break
        item = Contact(
            id=row.id,
            name=display_name(row),
            kind="Clinician" if row.resource_type == "Practitioner" else "Clinic",
            phone=phones[0] if phones else None,
            address=address,
            source=records.source(row),
        )
        items.append(marked(records, fact, item))
    return items


# ---- coverage ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Coverage:
    id: int
    payer: str
    plan: str | None
    kind: str | None
    status: str
    active: bool
    period: str | None
    member_id: str | None
    relationship: str | None
    source: str
    details: tuple[tuple[str, str], ...] = field(default=())
    also: tuple[str, ...] = ()  # other sources that hold the same policy


def coverage(records: Records) -> list[Coverage]:
    """Insurance on record, active first; one policy both clinics hold (the same member
    identifier) once, with `also` its other source."""
    stored = section_facts(records, "coverage", ["coverage"], same=lambda row: None)
    found = read(records, ["coverage"], stored.all(), None)
    rows = [f.row for f in found]
    names = records.names(rows, "payor")
    items = []
    for fact in found:
        row = fact.row
        raw = row.raw
        payers = [records.ref_name(names, row, p) for p in raw.get("payor") or []]
        details = []
        plan = None
        for c in raw.get("class") or []:
            if not isinstance(c, dict):
                continue
            label = concept_text(c.get("type")) or "Plan"
            value = c.get("name") or c.get("value")
            if value:
                details.append((label.capitalize(), str(value)))
                if plan is None and first_code(c.get("type")) in ("plan", "group"):
                    plan = str(c.get("name") or c.get("value"))
        items.append(
            Coverage(
                id=row.id,
                payer=", ".join(p for p in payers if p) or "Insurer not named",
                plan=plan,
                kind=concept_text(raw.get("type")),
                status=status_words(row.status) or "Status not recorded",
                active=row.status in (None, "active"),
                period=first_capital(period_text(raw.get("period"))),
                member_id=raw.get("subscriberId")
                or next(
                    (
                        str(i["value"])
                        for i in raw.get("identifier") or []
                        if isinstance(i, dict) and i.get("value")
                    ),
                    None,
                ),
                relationship=concept_text(raw.get("relationship")),
                source=records.source(row),
                details=tuple(details),
                also=fact.also(records),
            )
        )
    items.sort(key=lambda c: not c.active)
    return items
