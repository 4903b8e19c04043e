"""FHIR JSON with its decimals as written: `5.10` stays `5.10`, `5` stays `5`.

A FHIR decimal's trailing zeros say how precisely it was measured, and floats forget them.
Decimals are parsed as `Decimal` and kept as `FhirDecimal`, a float (so every reader can
compute with it) that remembers the digits the clinic sent; writing it back writes those
digits. The sync parses what EHRs send with `loads` and stores it with `dumps`; the database
reads stored JSON back with `loads` (portal.db.make_engine).
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson


class FhirDecimal(float):
    """A decimal as the clinic wrote it: a float, with `text` (its digits) and `places`."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> FhirDecimal:
        value = super().__new__(cls, text)
        value.text = text
        return value

    @property
    def places(self) -> int:
        """Digits after the decimal point as written (`5.10` -> 2, `1.5e2` -> 0)."""
        return decimal_places(self.text)

    def __reduce__(self) -> tuple[Any, ...]:
        return (FhirDecimal, (self.text,))


def decimal_places(text: str) -> int:
    try:
        exponent = Decimal(text).as_tuple().exponent
    except InvalidOperation:
        return 0
    return max(0, -exponent) if isinstance(exponent, int) else 0


def places_of(value: Any) -> int | None:
    """How many decimals a number was written with (None when it is not known: a float)."""
    if isinstance(value, FhirDecimal):
        return value.places
    if isinstance(value, Decimal):
        return decimal_places(str(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return 0
    return None


def loads(data: str | bytes) -> Any:
    """JSON text as Python, its decimals as FhirDecimal."""
    return json.loads(data, parse_float=FhirDecimal)


def _default(value: Any) -> Any:
    if isinstance(value, FhirDecimal):
        return orjson.Fragment(value.text)
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value))
    if isinstance(value, float):  # another float subclass: as a float
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps_bytes(value: Any) -> bytes:
    """Compact JSON of a value, its decimals with the digits they were written with."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)


def column_dumps(value: Any) -> str:
    """What a JSON column writes: as dumps, or, for what orjson refuses (an integer beyond 64
    bits), the standard library's JSON (its decimals then as floats)."""
    try:
        return dumps(value)
    except TypeError:
        return json.dumps(value, default=float)


def dumps(value: Any) -> str:
    """Compact JSON text of a value (see dumps_bytes)."""
    return dumps_bytes(value).decode()
