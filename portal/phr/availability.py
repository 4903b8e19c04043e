"""Whether a records section is complete, and if not why: one verdict, in plain words.

For each clinic of a record and each records section, the clinic's grant and its latest sync
say one of: it did not share the section (the grant misses one of the searches behind it), the
section is still being fetched (the latest sync is running and has not finished it), it could
not be fetched (the latest sync ended without it), or the clinic answered. `section_state`
folds that across the record's sources with whether anything is on record; the records pages
and "Your clinics" (through `answers`) read their words from here, so they never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from portal.models import EhrConnection, SyncRun
from portal.phr import answers as answered
from portal.phr import documents, labs
from portal.smart import scopes
from portal.sync import reasons
from portal.sync.engine import ACTIVE
from portal.sync.plan import REFERENCED_TYPES

if TYPE_CHECKING:
    from portal.phr.records import Records


class Availability(StrEnum):
    """What a section (or one clinic's part of it) holds, as far as the portal knows."""

    NOT_CONNECTED = "not-connected"  # no clinic connected, and nothing of the patient's own
    NOT_SHARED = "not-shared"  # the clinic's grant misses a search behind the section
    FETCHING = "fetching"  # the latest sync is still on it (or none has run yet)
    FAILED = "failed"  # the latest sync ended without it
    NONE = "none"  # every source answered and had nothing
    HAS_ITEMS = "has-items"


# Why a section may be incomplete, in the order its words are said.
GAPS = (Availability.NOT_SHARED, Availability.FETCHING, Availability.FAILED)
# Read by id rather than searched (the patient, and what records refer to): a read grant is
# enough for them.
READ_BY_ID = frozenset({"Patient", *REFERENCED_TYPES})
# The searches behind each section: its sources but those only read where records refer to
# them (Medication), unless it has no others (clinicians and clinics).
SEARCHES: dict[str, tuple[tuple[str, str | None], ...]] = {
    section: tuple(s for s in sources if s[0] not in REFERENCED_TYPES) or sources
    for section, sources in scopes.SECTION_SOURCES.items()
}
# The searches that bring a section's own items, where not all of them do (reports group lab
# results; without the results themselves, none of the lab results was shared).
ITEM_SOURCES: dict[str, tuple[tuple[str, str | None], ...]] = {
    "labs": (("Observation", "laboratory"),),
}
# The rows that are a section's own items, where not all of its categories' rows are (Medication
# resources name medicines; reports group results, and are documents when they came as one).
ITEMS: dict[str, tuple[tuple[str, ...], tuple[sa.ColumnElement[bool], ...]]] = {
    "medications": (("medications",), ()),
    "labs": (labs.RESULTS, ()),
    "documents": (documents.CATEGORIES, (documents.LISTED,)),
    "social": answered.SOCIAL_ITEMS,
    "surveys": answered.SURVEY_ITEMS,
}
# Where `scopes.SECTION_NAMES` is one thing rather than many ("is", not "are").
SINGULAR = frozenset({"careteam", "coverage", "social"})
# Where the section's name does not read well after "No ... on record."
EMPTY_NAMES = {
    "careteam": "care team",
    "patient": "demographics",
    "directory": "clinicians or clinics",
}


@dataclass(frozen=True)
class Answer:
    """What one clinic's grant and latest sync say of one section."""

    state: Availability  # NOT_SHARED, FETCHING, FAILED, or NONE: it answered
    partly: bool = False  # NOT_SHARED: some of the searches behind the section were granted
    running: bool = False  # FETCHING: a sync is running (else none has run yet)
    reason: str | None = None  # FAILED: why, in the sync's plain words (a clause)


ANSWERED = Answer(Availability.NONE)


def _granted(grants: list[scopes.Grant], rtype: str, category: str | None) -> bool:
    if rtype in READ_BY_ID:
        return scopes.can_search(grants, rtype, category) or scopes.can_read(grants, rtype)
    return scopes.can_search(grants, rtype, category)


def answers(
    connection: EhrConnection, run: SyncRun | None, *, stored: bool = False
) -> dict[str, Answer]:
    """Every records section's answer from this clinic; `stored`: records of it are stored
    (which, with no sync run at all, is taken as its answer)."""
    grants = scopes.parse_grants(connection.granted_scope or "")
    progress: dict[str, Any] = (run.progress or {}) if run is not None else {}
    out = {}
    for section in scopes.SECTION_SOURCES:
        granted = {source: _granted(grants, *source) for source in SEARCHES[section]}
        if not all(granted.values()):
            partly = any(granted[source] for source in ITEM_SOURCES.get(section, granted))
            out[section] = Answer(Availability.NOT_SHARED, partly=partly)
        else:
            out[section] = _fetched(connection, run, progress, section, stored)
    return out


def _fetched(
    connection: EhrConnection,
    run: SyncRun | None,
    progress: dict[str, Any],
    section: str,
    stored: bool,
) -> Answer:
    """A granted section's answer, from the clinic's latest sync."""
    if run is None:
        # No sync ever ran: what is stored (put there by other means) is all there is.
        answered = stored or connection.last_synced_at is not None
        return ANSWERED if answered else Answer(Availability.FETCHING)
    part = progress.get(section)
    part = part if isinstance(part, dict) else None
    if run.status in ACTIVE:
        if part is None or not part.get("done"):
            return Answer(Availability.FETCHING, running=True)
        return _failed(part, run) if part.get("error") else ANSWERED
    if run.status == "complete":
        return ANSWERED
    if part is None:
        # Planned searches are all in the progress; one missing was not planned (nothing
        # referred to clinicians, say), unless the run stopped before planning anything.
        return _failed(None, run) if not progress else ANSWERED
    if part.get("error") or not part.get("done"):
        return _failed(part, run)
    return ANSWERED


def _failed(part: dict[str, Any] | None, run: SyncRun) -> Answer:
    error = part.get("error") if part else None
    reason = reasons.readable(error if isinstance(error, str) else None)
    if reason is None and not part:
        reason = reasons.readable(run.error)
    if reason is not None and reason.rstrip(".") == reasons.GENERAL:
        reason = None  # "could not be fetched" says it already
    return Answer(Availability.FAILED, reason=reason.rstrip(". ") if reason else None)


@dataclass(frozen=True)
class ClinicPart:
    """One clinic's part of a section."""

    connection_id: int
    clinic: str
    state: Availability  # the answer's state; HAS_ITEMS when it answered with items
    has_items: bool = False  # stored items of it (a gap's: from earlier, or what arrived)
    partly: bool = False
    running: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class SectionState:
    """What a section holds across the record's sources, and what the page says about it."""

    section: str
    state: Availability
    clinics: tuple[ClinicPart, ...]
    allowed: bool  # the viewer may see this section (a caregiver may be limited to some)
    own_items: bool = False  # the patient's own entries are in it

    @property
    def name(self) -> str:
        """The section's own name in plain words ("lab results")."""
        return scopes.SECTION_NAMES.get(self.section, self.section)

    @property
    def connected(self) -> bool:
        """At least one clinic is connected."""
        return bool(self.clinics)

    @property
    def gaps(self) -> tuple[ClinicPart, ...]:
        """The clinics whose part is missing or may be incomplete."""
        return tuple(c for c in self.clinics if c.state in GAPS)

    @property
    def key(self) -> str:
        """What a prepared page showing this section depends on beyond the stored records."""
        return ";".join(
            f"{c.connection_id}:{c.state}:{c.partly:d}{c.running:d}:{c.reason or ''}"
            for c in self.clinics
        )

    @property
    def words(self) -> list[str]:
        """Sentences for where the section's list is empty (none when it has items)."""
        if self.state is Availability.NOT_CONNECTED:
            return ["You have not connected a clinic yet, so there is nothing to show here."]
        if self.state is Availability.HAS_ITEMS:
            return []
        if self.state is Availability.NONE:
            return [self.none_words]
        out = _gap_sentences(self, partial=False)
        answered = [c.clinic for c in self.clinics if c.state is Availability.NONE]
        if answered:
            has = "has" if len(answered) == 1 else "have"
            out.append(f"{and_list(answered)} {has} no {self.empty_name} on record.")
        return out

    @property
    def partial_words(self) -> list[str]:
        """Sentences above a list that has items, when some clinic's part may be missing."""
        if self.state is not Availability.HAS_ITEMS:
            return []
        return _gap_sentences(self, partial=True)

    @property
    def hint(self) -> str | None:
        """What the patient can do when a clinic did not share the section."""
        if self.state is Availability.NOT_SHARED:
            return f"To see {self.name} here, connect again and allow this when your clinic asks."
        return None

    @property
    def empty_name(self) -> str:
        return EMPTY_NAMES.get(self.section, self.name)

    @property
    def none_words(self) -> str:
        """ "No lab results on record." (true only when the state is NONE or HAS_ITEMS)."""
        return f"No {self.empty_name} on record."


def section_state(records: Records, section: str) -> SectionState:
    """The verdict on one section of this record: the one function every page asks."""
    return section_states(records, [section])[section]


def section_states(records: Records, sections: Sequence[str]) -> dict[str, SectionState]:
    """The verdicts on several sections (a summary's), what each clinic holds of them found in
    one query."""
    runs = records.latest_runs
    clinics = records.clinics
    no_run = [c.id for c in clinics if c.id not in runs and c.last_synced_at is None]
    stored = records.sources_with(None, no_run) if no_run else frozenset()
    asked = {
        section: ITEMS.get(section) or (records.categories_of(section), ()) for section in sections
    }
    presence = records.sources_with_each(list(asked.values()))
    return {
        section: _state(records, section, runs, stored, present)
        for section, present in zip(asked, presence, strict=True)
    }


def _state(
    records: Records,
    section: str,
    runs: dict[int, SyncRun],
    stored: frozenset[int],
    present: frozenset[int],
) -> SectionState:
    parts = []
    for connection in records.clinics:
        answer = answers(connection, runs.get(connection.id), stored=connection.id in stored)[
            section
        ]
        state = answer.state
        if state is Availability.NONE and connection.id in present:
            state = Availability.HAS_ITEMS
        parts.append(
            ClinicPart(
                connection_id=connection.id,
                clinic=connection.source_name,
                state=state,
                has_items=connection.id in present,
                partly=answer.partly,
                running=answer.running,
                reason=answer.reason,
            )
        )
    own = bool(present & records.own_ids)
    return SectionState(
        section=section,
        state=_fold(parts, own),
        clinics=tuple(parts),
        allowed=records.view.allows(section),
        own_items=own,
    )


def _fold(parts: list[ClinicPart], own_items: bool) -> Availability:
    states = {p.state for p in parts}
    if own_items or any(p.has_items for p in parts):
        return Availability.HAS_ITEMS
    if not parts:
        return Availability.NOT_CONNECTED
    return next((gap for gap in GAPS if gap in states), Availability.NONE)


def version(records: Records) -> str:
    """Every clinic's answer for every section, as a key: what prepared pages depend on
    beyond the stored records (which `EhrConnection.data_version` covers)."""
    runs = records.latest_runs
    out = []
    for connection in records.clinics:
        run = runs.get(connection.id)
        found = answers(connection, run, stored=True)
        gaps = [f"{s}={a.state}{a.partly:d}{a.running:d}{a.reason or ''}" for s, a in found.items()]
        out.append(f"{connection.id}:{run.id if run else ''}:{','.join(gaps)}")
    return "|".join(out)


# ---- words ----------------------------------------------------------------------------------


def and_list(names: list[str]) -> str:
    """ "A", "A and B", "A, B and C"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def your(name: str) -> str:
    """ "lab results" -> "your lab results" ("your care team" stays)."""
    return name if name.startswith("your ") else f"your {name}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _grouped(parts: list[ClinicPart]) -> dict[tuple[Any, ...], list[str]]:
    """Clinics by what is said of them (same state, same reason): one sentence each."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for p in parts:
        groups.setdefault((p.state, p.partly, p.running, p.reason), []).append(p.clinic)
    return groups


def _gap_sentences(state: SectionState, *, partial: bool) -> list[str]:
    name, singular = state.name, state.section in SINGULAR
    is_, has = ("is", "has") if singular else ("are", "have")
    incomplete = ", so this list may be incomplete" if partial else ""
    out = []
    for gap in GAPS:
        parts = [p for p in state.gaps if p.state is gap]
        for (_, partly, running, reason), names in _grouped(parts).items():
            who = and_list(names)
            if gap is Availability.NOT_SHARED:
                what = f"all of {your(name)}" if partly else name
                out.append(f"{who} did not share {what} with this app{incomplete}.")
            elif gap is Availability.FETCHING and running:
                more = ", so more may appear here" if partial else ""
                out.append(f"{_cap(your(name))} from {who} {is_} still being fetched{more}.")
            elif gap is Availability.FETCHING:
                out.append(f"{_cap(your(name))} from {who} {has} not been fetched yet{incomplete}.")
            elif partial:
                out.append(
                    f"{_cap(your(name))} from {who} could not be fetched in the last update, "
                    "so this list may be incomplete or out of date."
                )
            else:
                because = f" {_cap(reason)}." if reason else ""
                out.append(f"{_cap(your(name))} from {who} could not be fetched.{because}")
    return out


def clinic_words(clinic: str, found: dict[str, Answer]) -> list[str]:
    """What one clinic's answers say of its sections ("Your clinics"): the same verdicts as
    the records pages, a sentence per kind of gap."""
    by_gap: dict[tuple[Availability, bool], list[str]] = {}
    for section, answer in found.items():
        if answer.state in GAPS:
            key = (answer.state, answer.partly and answer.state is Availability.NOT_SHARED)
            by_gap.setdefault(key, []).append(scopes.SECTION_NAMES.get(section, section))
    out = []
    for (gap, partly), names in sorted(by_gap.items(), key=lambda kv: GAPS.index(kv[0][0])):
        listed = and_list(sorted(names))
        if gap is Availability.NOT_SHARED and partly:
            listed = and_list(sorted(your(n) for n in names))
            out.append(f"{clinic} did not share all of {listed} with this app.")
        elif gap is Availability.NOT_SHARED:
            out.append(f"{clinic} did not share {listed} with this app.")
        elif gap is Availability.FETCHING:
            out.append(f"Still being fetched from {clinic}: {listed}.")
        else:
            out.append(f"Could not be fetched from {clinic} in the last update: {listed}.")
    return out
