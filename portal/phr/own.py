"""The patient's own entries in their words: "You take it since 21 May 1963", not
"Prescribed by <the patient>"."""

from __future__ import annotations

from typing import Any

from portal.phr.words import concept_text, date_text


def own_medicine_words(raw: dict[str, Any], current: bool) -> str:
    """What a medicine the patient entered says of when: since the day they gave, or, when
    they gave none (the entry is dated with the moment it was added), when they added it."""
    when = raw.get("effectiveDateTime") or raw.get("authoredOn")
    day = date_text(when)
    if day is None:
        return "You take it" if current else "You took it"
    if isinstance(when, str) and len(when) > 10:  # an instant: when it was entered
        return f"You take it (added {day})" if current else f"You took it (added {day})"
    return f"You take it since {day}" if current else f"You took it from {day}"


SEVERITY = {"mild": "mild", "moderate": "moderate", "severe": "severe"}


def reaction_words(raw: dict[str, Any]) -> str | None:
    """The reactions an allergy entry records, with their severity: "Hives (severe)"."""
    parts = []
    for reaction in raw.get("reaction") or []:
        if not isinstance(reaction, dict):
            continue
        what = ", ".join(
            str(m.get("text") or concept_text(m) or "")
            for m in reaction.get("manifestation") or []
            if isinstance(m, dict)
        ).strip(", ")
        what = what or str(reaction.get("description") or "")
        severity = SEVERITY.get(str(reaction.get("severity")))
        if what and severity:
            parts.append(f"{what} ({severity})")
        elif what:
            parts.append(what)
        elif severity:
            parts.append(f"A {severity} reaction")
    return "; ".join(parts) or None
