"""Bills and claims: what a clinic billed for a visit, what insurance paid, what is left for
the patient, read from Claim and ExplanationOfBenefit (the insurer's answer to a claim).

An explanation of benefit says more than its claim, so a claim it answers is shown through it;
a claim nobody answered yet is shown alone. Amounts the sources do not state are said to be
unknown, never computed from the others.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from portal.phr import facts, merge
from portal.phr.classify import codes_of
from portal.phr.records import Page, Records, Row
from portal.phr.words import concept_text, date_text

ELEMENTS = (
    "billablePeriod",
    "created",
    "provider",
    "insurer",
    "insurance",
    "claim",
    "total",
    "payment",
    "item",
    "status",
    "outcome",
)
# What telling bills apart and naming their insurers reads (a bill's lines are read only for
# the page that shows it).
KEYS = ("claim", "total", "identifier", "insurer", "insurance")
ITEMS_SHOWN = 3  # what a bill was for: the first few of its lines
# Adjudication categories (terminology.hl7.org CodeSystem/adjudication) that are the patient's.
PATIENT_SHARE = ("copay", "deductible", "patientpay")


@dataclass(frozen=True)
class Bill:
    id: int
    date: str | None
    provider: str | None
    services: tuple[str, ...]
    more_services: int
    billed: str | None
    insurance_paid: str | None
    you_owe: str | None
    insurer: str | None
    answered: bool  # the insurer's explanation is there (not only the claim)
    source: str
    also: tuple[str, ...] = ()  # other sources that sent the same bill
    merged: tuple[int, ...] = ()  # the records folded into this item (to split them again)
    apart: tuple[int, ...] = ()  # records the patient said are not this one (to join again)


@dataclass(frozen=True)
class Insurer:
    """An insurer named on bills, when the clinic shared no coverage: since when, until when."""

    name: str
    first: str | None
    last: str | None
    bills: int


def bills(records: Records, page: int = 1, size: int = 25) -> Page[Bill]:
    """Bills newest first: each explanation of benefit, and each claim none answers."""
    found = _facts(records)
    pages = max(1, -(-found.total // size))
    number = min(max(1, page), pages)
    chosen = merge.read(
        records, ["claims"], found.slice((number - 1) * size, number * size), ELEMENTS
    )
    names = records.names([f.row for f in chosen], "provider")
    items = [merge.marked(records, f, _bill(records, names, f.row)) for f in chosen]
    return Page(items, number, size, found.total)


def _facts(records: Records) -> facts.Folded:
    """The bills, newest first (stored, portal.phr.facts): each explanation of benefit, and
    each claim none answers; one bill sent by two clinics (the same kind, moment and total)
    once."""

    def compute() -> list[facts.Entry]:
        rows = records.rows(["claims"], elements=KEYS)
        answered = {
            (row.connection_id, reference)
            for row in rows
            if row.resource_type == "ExplanationOfBenefit"
            for reference in [_reference(row.raw.get("claim"))]
            if reference
        }
        shown = [
            row
            for row in rows
            if row.resource_type == "ExplanationOfBenefit"
            or (row.connection_id, row.ref) not in answered
        ]
        return merge.entries(merge.fold(records, shown, same=_same_bill))

    return facts.folded(records, "bills", compute)


def _same_bill(row: Row) -> tuple[object, str] | None:
    moment = merge.same_moment(row)
    return None if moment is None else (moment, repr(row.raw.get("total")))


def insurers(records: Records) -> list[Insurer]:
    """Insurers named on the bills, most recent first (for a record without coverage), each
    with how many of the bills page's bills name it (worked out once, portal.phr.facts)."""

    def compute() -> list[facts.Entry]:
        bills = _facts(records).all()
        found: dict[str, list[Row]] = {}
        for fact in merge.read(records, ["claims"], bills, ("insurer", "insurance")):
            name = next((n for r in fact.rows if (n := _insurer(r.raw))), None)
            if name:
                found.setdefault(name, []).append(fact.row)
        out = []
        for name, rows in found.items():
            dates = [r.effective_at for r in rows if r.effective_at]
            insurer = Insurer(
                name=name,
                first=date_text(min(dates)) if dates else None,
                last=date_text(max(dates)) if dates else None,
                bills=len(rows),
            )
            out.append(facts.Entry((rows[0].id,), data=asdict(insurer)))
        return out

    return [Insurer(**e.data) for e in facts.folded(records, "insurers", compute).all()]


def _bill(records: Records, names: dict[tuple[int, str], str], row: Row) -> Bill:
    raw = row.raw
    eob = row.resource_type == "ExplanationOfBenefit"
    services = [
        text
        for item in raw.get("item") or []
        if isinstance(item, dict)
        for text in [concept_text(item.get("productOrService"))]
        if text
    ]
    services = list(dict.fromkeys(services))
    period = raw.get("billablePeriod")
    period = period if isinstance(period, dict) else {}
    return Bill(
        id=row.id,
        date=date_text(period.get("start") or raw.get("created")),
        provider=records.ref_name(names, row, raw.get("provider")),
        services=tuple(services[:ITEMS_SHOWN]),
        more_services=max(0, len(services) - ITEMS_SHOWN),
        billed=_money(_billed(raw, eob)),
        insurance_paid=_money((raw.get("payment") or {}).get("amount")) if eob else None,
        you_owe=_money(_patient_share(raw)) if eob else None,
        insurer=_insurer(raw),
        answered=eob,
        source=records.source(row),
    )


def _billed(raw: dict[str, Any], eob: bool) -> Any:
    if not eob:
        return raw.get("total")
    return next(
        (
            t.get("amount")
            for t in raw.get("total") or []
            if isinstance(t, dict) and "submitted" in codes_of(t.get("category"))
        ),
        None,
    )


def _patient_share(raw: dict[str, Any]) -> dict[str, Any] | None:
    """The patient's part as the insurer states it: a `patientpay` total, else the sum of the
    lines' copay, deductible and patient-pay adjudications; None when it says neither."""
    for t in raw.get("total") or []:
        if isinstance(t, dict) and "patientpay" in codes_of(t.get("category")):
            amount = t.get("amount")
            return amount if isinstance(amount, dict) else None
    parts = [
        a.get("amount")
        for item in raw.get("item") or []
        if isinstance(item, dict)
        for a in item.get("adjudication") or []
        if isinstance(a, dict) and set(codes_of(a.get("category"))) & set(PATIENT_SHARE)
    ]
    values = [p for p in parts if isinstance(p, dict) and _amount(p) is not None]
    if not values:
        return None
    currency = values[0].get("currency")
    return {"value": sum(_amount(v) or Decimal(0) for v in values), "currency": currency}


def _amount(money: dict[str, Any]) -> Decimal | None:
    value = money.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return Decimal(str(value))


def _money(money: Any) -> str | None:
    """ "$125.00", "€12.50", "12.50 CHF"."""
    if not isinstance(money, dict):
        return None
    value = _amount(money)
    if value is None:
        return None
    currency = str(money.get("currency") or "USD")
    text = f"{value.quantize(Decimal('0.01')):,}"
    symbol = {"USD": "$", "EUR": "€", "GBP": "£"}.get(currency)
    return f"{symbol}{text}" if symbol else f"{text} {currency}"


def _insurer(raw: dict[str, Any]) -> str | None:
    insurer = raw.get("insurer")
    if isinstance(insurer, dict) and insurer.get("display"):
        return _tidy(str(insurer["display"]))
    for entry in raw.get("insurance") or []:
        coverage = entry.get("coverage") if isinstance(entry, dict) else None
        if isinstance(coverage, dict) and coverage.get("display"):
            return _tidy(str(coverage["display"]))
    return None


def _tidy(name: str) -> str:
    """Synthea's "private" and "NO_INSURANCE" read as words."""
    words = name.replace("_", " ").strip()
    if words.lower() == "private":
        return "Private insurance"
    if words.lower() == "no insurance":
        return "No insurance"
    return words if any(c.isupper() for c in words[1:]) and not words.isupper() else words.title()


def _reference(value: Any) -> str | None:
    reference = value.get("reference") if isinstance(value, dict) else None
    return reference if isinstance(reference, str) and "/" in reference else None
