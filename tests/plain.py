"""What a patient reads carries no HTTP status, exception name or FHIR type name."""

from __future__ import annotations

import re

from portal.smart import scopes
from portal.sync.plan import REFERENCED_TYPES

FHIR_TYPES = frozenset(
    {*scopes.resource_types(), *REFERENCED_TYPES, "Bundle", "OperationOutcome", "Binary"}
)
# A number an HTTP status could be, unless it counts something ("179 items", "250 results").
_STATUS = re.compile(r"(?<!\d,)\b[1-5]\d\d\b(?!,\d)(?! (?:items?|results?)\b)")
_EXCEPTION = re.compile(r"[A-Z][a-z]+(?:[A-Z][a-z]*)*(?:Error|Exception|Timeout)\b|Error\b")


def technical_words(text: str) -> list[str]:
    """The parts of `text` a patient should not have to read (empty when it is plain)."""
    found = _STATUS.findall(text) + _EXCEPTION.findall(text)
    found += [word for word in re.findall(r"[A-Za-z]+", text) if word in FHIR_TYPES]
    return found


def assert_plain(text: str | None) -> None:
    assert text, "expected words for the patient"
    assert technical_words(text) == [], text
