"""What a patient can measure and record themselves: codes, units and plausible ranges.

A built-in subset of LOINC for vitals and measurements, with the UCUM units the form offers.
Ranges are wide on purpose: they catch typing mistakes (a weight of 7000 kg), not illness.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


@dataclass(frozen=True)
class Unit:
    code: str  # UCUM
    label: str  # what the form shows: "kg", "lb"
    to_base: Callable[[float], float]  # into the measure's first unit, for the range check


@dataclass(frozen=True)
class Measure:
    key: str
    name: str  # "Blood pressure"
    loinc: str
    display: str  # the LOINC display name
    category: str  # observation-category code
    units: tuple[Unit, ...]  # the first is the one ranges are in
    low: float
    high: float
    integer: bool = False  # whole numbers only (steps, pain score)
    components: tuple[tuple[str, str, str], ...] = field(default=())  # (loinc, display, label)
    hint: str = ""

    @property
    def unit_codes(self) -> tuple[str, ...]:
        return tuple(u.code for u in self.units)

    def unit(self, code: str) -> Unit | None:
        return next((u for u in self.units if u.code == code), None)


def _same(value: float) -> float:
    return value


MMHG = Unit("mm[Hg]", "mmHg", _same)

MEASURES: tuple[Measure, ...] = (
    Measure(
        "blood-pressure",
        "Blood pressure",
        "85354-9",
        "Blood pressure panel with all children optional",
        "vital-signs",
        (MMHG,),
        40,
        300,
        integer=True,
        components=(
            ("8480-6", "Systolic blood pressure", "Top number (systolic)"),
            ("8462-4", "Diastolic blood pressure", "Bottom number (diastolic)"),
        ),
        hint="For example 120 over 80.",
    ),
    Measure(
        "weight",
        "Weight",
        "29463-7",
        "Body weight",
        "vital-signs",
        (
            Unit("kg", "kg", _same),
            Unit("[lb_av]", "lb", lambda v: v * 0.45359237),
        ),
        0.5,
        500,
    ),
    Measure(
        "height",
        "Height",
        "8302-2",
        "Body height",
        "vital-signs",
        (
            Unit("cm", "cm", _same),
            Unit("[in_i]", "in", lambda v: v * 2.54),
        ),
        20,
        272,
    ),
    Measure(
        "heart-rate",
        "Heart rate",
        "8867-4",
        "Heart rate",
        "vital-signs",
        (Unit("/min", "beats per minute", _same),),
        20,
        300,
        integer=True,
    ),
    Measure(
        "temperature",
        "Temperature",
        "8310-5",
        "Body temperature",
        "vital-signs",
        (
            Unit("Cel", "°C", _same),
            Unit("[degF]", "°F", lambda v: (v - 32) * 5 / 9),
        ),
        30,
        45,
    ),
    Measure(
        "glucose",
        "Blood glucose",
        "41653-7",
        "Glucose [Mass/volume] in Capillary blood by Glucometer",
        "laboratory",
        (
            Unit("mg/dL", "mg/dL", _same),
            Unit("mmol/L", "mmol/L", lambda v: v * 18.016),
        ),
        10,
        1000,
    ),
    Measure(
        "oxygen",
        "Oxygen level",
        "59408-5",
        "Oxygen saturation in Arterial blood by Pulse oximetry",
        "vital-signs",
        (Unit("%", "%", _same),),
        50,
        100,
    ),
    Measure(
        "pain",
        "Pain score",
        "72514-3",
        "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
        "survey",
        (Unit("{score}", "out of 10", _same),),
        0,
        10,
        integer=True,
        hint="0 is no pain, 10 the worst pain you can imagine.",
    ),
    Measure(
        "steps",
        "Steps",
        "41950-7",
        "Number of steps in 24 hour Measured",
        "activity",
        (Unit("/d", "steps in the day", _same),),
        0,
        100_000,
        integer=True,
    ),
)
MEASURE_BY_KEY = {m.key: m for m in MEASURES}
