"""What the patient told their clinics: social history (smoking, alcohol, housing, work) and
questionnaires (PHQ-9, GAD-7, AUDIT-C...), each instrument with its scores over time.

Social history is US Core's `social-history` category, and also the social-history LOINC codes
clinics file under `survey` (Synthea files smoking status there): where a patient looks for
"do I smoke" does not depend on the clinic's category.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import sqlalchemy as sa

from portal.models import FhirRecord
from portal.phr import facts
from portal.phr.records import Records, Row
from portal.phr.words import concept_text, date_text, lab_name, value_text

VALUE_KINDS = (
    "Quantity",
    "CodeableConcept",
    "String",
    "Boolean",
    "Integer",
    "Range",
    "Ratio",
    "DateTime",
    "Period",
    "Time",
)

# Social-history LOINC codes (US Core's smoking status and the common social determinants).
SOCIAL_CODES = frozenset(
    {
        "72166-2",  # tobacco smoking status
        "11367-0",  # history of tobacco use
        "39240-7",  # tobacco use (other)
        "11331-6",  # history of alcohol use
        "74013-4",  # alcoholic drinks per day
        "11341-5",  # history of occupation
        "85658-3",  # occupation
        "71802-3",  # housing status
        "93033-9",  # worried about losing housing
        "63586-2",  # family income
        "82589-3",  # highest level of education
        "76513-1",  # how hard to pay for basics
        "93030-5",  # lack of transportation
    }
)
# What the pages read of each answer (the rest of the resource stays in the database).
ELEMENTS = (
    "code",
    "effectiveDateTime",
    "effectivePeriod",
    "issued",
    "component",
    "dataAbsentReason",
    *(f"value{kind}" for kind in VALUE_KINDS),
)
EARLIER_SHOWN = 10  # earlier answers (or, for social history, changes) under each topic
# Plain names where the code's own says more than a patient needs ("... NHIS").
NAMES = {
    "72166-2": "Smoking",
    "11367-0": "Tobacco use in the past",
    "11331-6": "Alcohol use",
    "74013-4": "Alcoholic drinks per day",
    "11341-5": "Work history",
    "85658-3": "Occupation",
    "71802-3": "Housing",
}


@dataclass(frozen=True)
class Answer:
    id: int
    value: str
    date: str | None
    source: str
    parts: tuple[tuple[str, str], ...] = ()  # a questionnaire's questions and answers
    since: str | None = None  # the same answer, given every time since this date
    times: int = 1  # how many times in a row it was given


@dataclass(frozen=True)
class Topic:
    """One thing asked (smoking status, a questionnaire): the latest answer, then earlier ones."""

    key: str
    name: str
    latest: Answer
    earlier: tuple[Answer, ...] = ()
    count: int = 1
    sources: tuple[str, ...] = field(default=())


SOCIAL = sa.or_(FhirRecord.category == "social", FhirRecord.code.in_(SOCIAL_CODES))
# Where each page's rows are (portal.phr.availability asks the same of the database).
SOCIAL_ITEMS = (("social", "surveys"), (SOCIAL,))
SURVEY_ITEMS = (("surveys",), (sa.not_(SOCIAL),))


def social_history(records: Records, limit: int | None = None) -> list[Topic]:
    """Smoking, alcohol, housing, work...: each topic's latest answer first."""
    return _stored(records, "social-topics", SOCIAL_ITEMS, limit, changes_only=True)


def questionnaires(records: Records) -> list[Topic]:
    """Each questionnaire or score, with every time it was answered (newest first)."""
    return _stored(records, "survey-topics", SURVEY_ITEMS, None)


def latest_social(records: Records, limit: int = 4) -> list[Topic]:
    """The summary's social history: the newest topics' latest answers."""
    return social_history(records, limit)


def _stored(
    records: Records,
    name: str,
    items: tuple[tuple[str, ...], tuple[sa.ColumnElement[bool], ...]],
    limit: int | None,
    *,
    changes_only: bool = False,
) -> list[Topic]:
    """The topics worked out from every answer once (portal.phr.facts: they hold the words
    shown, in the viewer's units and time zone, which the stored list is keyed by)."""
    categories, where = items

    def compute() -> list[facts.Entry]:
        rows = records.rows(categories, where=list(where), elements=ELEMENTS)
        topics = _topics(records, rows, changes_only=changes_only)
        return [facts.Entry((t.latest.id,), data=asdict(t)) for t in topics]

    found = facts.folded(records, name, compute, (*categories, *where))
    chosen = found.all() if limit is None else found.slice(0, limit)
    return [_topic(e.data) for e in chosen]


def _topic(data: dict[str, Any]) -> Topic:
    def answer(a: dict[str, Any]) -> Answer:
        return Answer(**(a | {"parts": tuple(tuple(p) for p in a["parts"])}))

    return Topic(
        key=data["key"],
        name=data["name"],
        latest=answer(data["latest"]),
        earlier=tuple(answer(a) for a in data["earlier"]),
        count=data["count"],
        sources=tuple(data["sources"]),
    )


def _topics(records: Records, rows: list[Row], *, changes_only: bool = False) -> list[Topic]:
    """Each code's answers, newest first; `changes_only`: a run of the same answer is one
    (asked at every visit, "Never smoker" twelve times says less than "since 2013")."""
    grouped: dict[str, list[Row]] = {}
    for row in rows:  # newest first: the first of each key is its latest answer
        grouped.setdefault(row.code or (row.display or "").lower(), []).append(row)
    topics = []
    for key, members in grouped.items():
        answers = _distinct([_answer(records, row) for row in members])
        if changes_only:
            answers = _runs(answers)
        topics.append(
            Topic(
                key=key,
                name=_name(members[0]),
                latest=answers[0],
                earlier=tuple(answers[1 : 1 + EARLIER_SHOWN]),
                count=len(answers),
                sources=tuple(dict.fromkeys(records.source(r) for r in members)),
            )
        )
    return topics


def _distinct(answers: list[Answer]) -> list[Answer]:
    """One answer per day and value: two clinics reporting the same answer count once."""
    seen: set[tuple[str | None, str]] = set()
    out = []
    for answer in answers:
        if (answer.date, answer.value) not in seen:
            seen.add((answer.date, answer.value))
            out.append(answer)
    return out


def _runs(answers: list[Answer]) -> list[Answer]:
    """Consecutive answers alike (newest first) as one, from the first time it was given."""
    out: list[Answer] = []
    for answer in answers:
        if out and out[-1].value == answer.value and not answer.parts:
            out[-1] = replace(out[-1], since=answer.date, times=out[-1].times + 1)
        else:
            out.append(answer)
    return out


def _name(row: Row) -> str:
    if row.code in NAMES:
        return NAMES[row.code]
    return lab_name(concept_text(row.raw.get("code")) or row.display or "Unnamed question")


def _answer(records: Records, row: Row) -> Answer:
    raw = row.raw
    parts = tuple(
        (concept_text(c.get("code")) or "Question", value_text(c) or "No answer")
        for c in raw.get("component") or []
        if isinstance(c, dict)
    )
    value = value_text(raw) or ("See the answers below" if parts else "No answer recorded")
    moment = raw.get("effectiveDateTime") or (raw.get("effectivePeriod") or {}).get("start")
    return Answer(
        id=row.id,
        value=value,
        date=date_text(moment or raw.get("issued")),
        source=records.source(row),
        parts=parts,
    )
