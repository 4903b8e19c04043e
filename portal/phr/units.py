"""Safe unit conversions between UCUM units of the same kind.

Only conversions that need no knowledge of the substance are made: metric prefixes
(g/L <-> mg/dL, 10*3/uL <-> 10*9/L), avoirdupois pounds and ounces to grams, inches to metres,
and Fahrenheit to Celsius. mg/dL and mmol/L measure different things (mass vs amount of
substance) and are never converted: that needs the molar mass of what was measured.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

PREFIXES = {
    "da": 1e1,
    "k": 1e3,
    "h": 1e2,
    "d": 1e-1,
    "c": 1e-2,
    "m": 1e-3,
    "u": 1e-6,
    "μ": 1e-6,
    "µ": 1e-6,
    "n": 1e-9,
    "p": 1e-12,
    "f": 1e-15,
}
# atom -> (base dimension, factor to the base). Atoms not listed keep their own dimension,
# so they convert only to themselves (with prefixes only when listed as prefixable).
ATOMS: dict[str, tuple[str, float]] = {
    "g": ("g", 1.0),
    "L": ("L", 1.0),
    "l": ("L", 1.0),
    "mol": ("mol", 1.0),
    "eq": ("eq", 1.0),
    "m": ("m", 1.0),
    "U": ("U", 1.0),
    "[IU]": ("[IU]", 1.0),
    "[iU]": ("[IU]", 1.0),
    "s": ("s", 1.0),
    "min": ("s", 60.0),
    "h": ("s", 3600.0),
    "d": ("s", 86400.0),
    "[lb_av]": ("g", 453.59237),
    "[oz_av]": ("g", 28.349523125),
    "[in_i]": ("m", 0.0254),
    "[ft_i]": ("m", 0.3048),
    "mm[Hg]": ("mm[Hg]", 1.0),
    "%": ("%", 1.0),
}
PREFIXABLE = {"g", "L", "l", "mol", "eq", "m", "U", "[IU]", "[iU]", "s"}
TEMPERATURES = {"Cel", "[degF]", "K"}
_TERM = re.compile(r"^(?P<atom>\[[^\]]+\]|mm\[Hg\]|%|[A-Za-zµμ]+?)(?P<exp>-?\d+)?$")
_POWER = re.compile(r"^10[\*\^](?P<exp>-?\d+)$")


@dataclass(frozen=True)
class Unit:
    """A parsed unit: a factor to its base units and the base units' exponents."""

    factor: float
    dimension: tuple[tuple[str, int], ...]


@lru_cache(maxsize=512)
def parse(code: str | None) -> Unit | None:
    """Parse a (simple) UCUM unit; None when it is not understood."""
    if code is None:
        return None
    code = code.strip()
    if code in TEMPERATURES:
        return Unit(1.0, ((code, 1),))
    if code in ("", "1"):
        return Unit(1.0, ())
    parts = code.split("/")
    factor = 1.0
    dims: Counter[str] = Counter()
    for i, part in enumerate(parts):
        sign = 1 if i == 0 else -1
        if part == "" and i == 0:
            continue  # "/min"
        for term in part.split("."):
            parsed = _term(term)
            if parsed is None:
                return None
            term_factor, term_dims = parsed
            factor *= term_factor**sign
            for base, exp in term_dims.items():
                dims[base] += exp * sign
    return Unit(factor, tuple(sorted((b, e) for b, e in dims.items() if e)))


def _term(term: str) -> tuple[float, Counter[str]] | None:
    if not term:
        return None
    if term.startswith("{") and term.endswith("}"):
        return 1.0, Counter({term: 1})  # an annotation is its own kind: never dropped
    power = _POWER.match(term)
    if power:
        return 10.0 ** int(power["exp"]), Counter()
    match = _TERM.match(term)
    if not match:
        return None
    atom, exp = match["atom"], int(match["exp"] or 1)
    resolved = _atom(atom)
    if resolved is None:
        return None
    base, factor = resolved
    return factor**exp, Counter({base: exp})


def _atom(atom: str) -> tuple[str, float] | None:
    if atom in ATOMS:
        return ATOMS[atom]
    for prefix in sorted(PREFIXES, key=len, reverse=True):
        rest = atom[len(prefix) :]
        if atom.startswith(prefix) and rest in PREFIXABLE:
            base, factor = ATOMS[rest]
            return base, factor * PREFIXES[prefix]
    if atom.isalpha() or atom.startswith("["):
        return atom, 1.0  # an unknown unit: convertible only to itself
    return None


def same_kind(a: str | None, b: str | None) -> bool:
    """Whether values in `a` can be shown in `b` by a safe conversion."""
    if a == b:
        return True
    ua, ub = parse(a), parse(b)
    return ua is not None and ub is not None and ua.dimension == ub.dimension


def kind(unit: str | None) -> str:
    """A key shared by every unit `unit` converts to (the unit itself when not understood)."""
    parsed = parse(unit)
    if parsed is None:
        return f"?{unit}"
    if len(parsed.dimension) == 1 and parsed.dimension[0][0] in TEMPERATURES:
        return "temperature"
    return ".".join(f"{b}^{e}" for b, e in parsed.dimension) or "1"


# g/mol of the substances whose mass and amount concentrations a patient is shown in
# either (mg/dL <-> mmol/L): only when the caller says which substance was measured.
MOLAR_MASS = {"glucose": 180.156}


def convert(
    value: float, from_unit: str | None, to_unit: str | None, substance: str | None = None
) -> float | None:
    """`value` in `from_unit` expressed in `to_unit`, or None when that is not a safe conversion.

    With a `substance` of `MOLAR_MASS`, mass and amount of it convert too (mg/dL <-> mmol/L)."""
    if from_unit == to_unit:
        return value
    if from_unit in TEMPERATURES and to_unit in TEMPERATURES:
        return _from_kelvin(_to_kelvin(value, from_unit), to_unit)
    ua, ub = parse(from_unit), parse(to_unit)
    if ua is None or ub is None:
        return None
    if ua.dimension == ub.dimension:
        return value * ua.factor / ub.factor
    molar_mass = MOLAR_MASS.get(substance or "")
    if molar_mass is not None:
        if _swap(ua.dimension, "mol", "g") == ub.dimension:  # amount -> mass
            return value * ua.factor * molar_mass / ub.factor
        if _swap(ua.dimension, "g", "mol") == ub.dimension:  # mass -> amount
            return value * ua.factor / molar_mass / ub.factor
    return None


Dimension = tuple[tuple[str, int], ...]


def _swap(dimension: Dimension, old: str, new: str) -> Dimension:
    """`dimension` with one power of `old` replaced by `new` (unchanged when it has no `old`)."""
    dims = Counter(dict(dimension))
    if dims.get(old) != 1 or new in dims:
        return dimension
    del dims[old]
    dims[new] = 1
    return tuple(sorted(dims.items()))


def _to_kelvin(value: float, unit: str | None) -> float:
    if unit == "Cel":
        return value + 273.15
    if unit == "[degF]":
        return (value - 32) * 5 / 9 + 273.15
    return value


def _from_kelvin(value: float, unit: str | None) -> float:
    if unit == "Cel":
        return value - 273.15
    if unit == "[degF]":
        return (value - 273.15) * 9 / 5 + 32
    return value


def preferred_unit(units: list[str | None]) -> str | None:
    """The unit most values came in (the latest one on a tie); `units` is newest first."""
    if not units:
        return None
    counts = Counter(units)
    best = max(counts.values())
    return next(u for u in units if counts[u] == best)
