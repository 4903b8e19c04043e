"""What the clinic had open when it opened the portal (the SMART launch context).

An EHR that launches the portal from a visit, a result or a document says so in the token
response (`encounter`, `fhirContext`). The summary then tells the patient what that was, in
words from the record the portal fetched, with a way to the section that holds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from portal.phr import visits
from portal.phr.records import CATEGORY_SECTIONS, Records, display_name
from portal.phr.words import concept_text, date_text

# What to call a resource the portal has not fetched (or may not show).
KIND_WORDS = {
    "Encounter": "a visit",
    "DiagnosticReport": "a report",
    "Observation": "a result",
    "DocumentReference": "a document",
    "MedicationRequest": "a medicine",
    "Condition": "a health problem",
    "AllergyIntolerance": "an allergy",
    "Immunization": "a vaccine",
    "Procedure": "a procedure",
    "CarePlan": "a care plan",
    "Goal": "a goal",
    "Appointment": "an appointment",
}


@dataclass(frozen=True)
class Opened:
    """One thing the clinic had open, described for the patient."""

    words: str
    section: str | None  # the records section that shows it (None: not in the record here)
    page: int = 1  # of that section's list
    anchor: str | None = None  # the item's place on that page


def opened(
    records: Records, connection_id: int, items: list[dict[str, Any]], *, fetching: bool
) -> list[Opened]:
    """The launch context of one of this record's connections, in plain words; `fetching`:
    that clinic's records are still arriving."""
    if connection_id not in records.sources:
        return []
    keys = [
        f"{item['type']}/{item['id']}"
        for item in items
        if isinstance(item, dict) and isinstance(item.get("type"), str) and item.get("id")
    ]
    found = records.resolve((connection_id, key) for key in keys)
    out = []
    for key in keys:
        rtype = key.split("/", 1)[0]
        kind = KIND_WORDS.get(rtype, "a record")
        row = found.get((connection_id, key))
        if row is None:
            words = (
                f"{kind.capitalize()}: it shows here once your records are fetched"
                if fetching
                else f"{kind.capitalize()} that is not in the record your clinic shared"
            )
            out.append(Opened(words, None))
            continue
        title = concept_text(row.raw.get("type")) if rtype == "Encounter" else None
        title = title or display_name(row)
        when = date_text(row.effective_at)
        if rtype == "Encounter":
            words = f"Your visit on {when}: {title}" if when else f"Your visit: {title}"
        else:
            words = f"{kind.capitalize()}: {title}" + (f", {when}" if when else "")
        sections = CATEGORY_SECTIONS.get(row.category, ())
        section = sections[0] if sections else None
        if section == "visits":  # the visit itself on the Visits page, not only the list
            out.append(Opened(words, section, visits.page_of(records, row), f"visit-{row.id}"))
        else:
            out.append(Opened(words, section))
    return out
