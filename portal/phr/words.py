"""FHIR elements in plain words: concepts, quantities, dates, statuses, missing values.

Everything here returns plain text; templates escape it.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Any

from portal.fhirjson import places_of
from portal.phr import localtime

DATA_ABSENT_URL = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
# http://terminology.hl7.org/CodeSystem/data-absent-reason, in a patient's words.
DATA_ABSENT = {
    "unknown": "Not recorded (unknown)",
    "asked-unknown": "Not recorded (asked but unknown)",
    "temp-unknown": "Not recorded (not known yet)",
    "not-asked": "Not recorded (not asked)",
    "asked-declined": "Not recorded (you chose not to say)",
    "masked": "Hidden by your clinic",
    "not-applicable": "Not applicable",
    "unsupported": "Not recorded (the system could not record it)",
    "as-text": "See the note",
    "error": "Not recorded (there was an error)",
    "not-a-number": "Not recorded (not a number)",
    "negative-infinity": "Too low to measure",
    "positive-infinity": "Too high to measure",
    "not-performed": "Not done",
    "not-permitted": "Not recorded (not permitted)",
}
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
SEX = {"male": "Male", "female": "Female", "other": "Other", "unknown": "Unknown"}
PERIOD_UNITS = {
    "s": ("second", "seconds"),
    "min": ("minute", "minutes"),
    "h": ("hour", "hours"),
    "d": ("day", "days"),
    "wk": ("week", "weeks"),
    "mo": ("month", "months"),
    "a": ("year", "years"),
}
# UCUM codes people do not read as units: shown as words, or not at all.
UNIT_WORDS = {
    "{score}": "",
    "(score)": "",
    "{nominal}": "",
    "1": "",
    "/min": "per minute",
    "/d": "a day",
    "mm[Hg]": "mmHg",
    "Cel": "°C",
    "[degF]": "°F",
    "kg/m2": "kg/m²",
    "[lb_av]": "lb",
    "[in_i]": "in",
    "[oz_av]": "oz",
    "mL/min/{1.73_m2}": "mL/min/1.73 m²",
    "10*3/uL": "\u00d710³/µL",
    "10*6/uL": "\u00d710⁶/µL",
    "10*9/L": "\u00d710⁹/L",
    "10*12/L": "\u00d710¹²/L",
    "uL": "µL",
    "ug/dL": "µg/dL",
    "ug/L": "µg/L",
    "umol/L": "µmol/L",
    "[iU]/L": "IU/L",
    "[IU]/L": "IU/L",
    "%": "%",
}


# SNOMED CT semantic tags ("Hypertension (disorder)") say nothing to a patient.
_SEMANTIC_TAG = re.compile(
    r"\s+\((?:disorder|finding|procedure|situation|observable entity|regime/therapy|"
    r"qualifier value|substance|morphologic abnormality|body structure|physical object|event|"
    r"product|record artifact|environment|person|navigational concept)\)$"
)


def tidy(text: str | None) -> str | None:
    """A code's display without a SNOMED semantic tag."""
    return _SEMANTIC_TAG.sub("", text) if text else text


_LOINC_PARTS = (re.compile(r"\s*\[[^\]]*\]"), re.compile(r"\s+by (automated|manual) count$", re.I))


def lab_name(name: str) -> str:
    """A lab test's name without LOINC's technical parts (`[Mass/volume]`, `by Automated count`)."""
    plain = name
    for part in _LOINC_PARTS:
        plain = part.sub("", plain)
    return plain.strip() or name


def concept_text(value: Any) -> str | None:
    """A CodeableConcept (or Coding, or list of them) as words: text, else a display."""
    return tidy(_concept_text(value))


def _concept_text(value: Any) -> str | None:
    if isinstance(value, list):
        for item in value:
            text = _concept_text(item)
            if text:
                return text
        return None
    if not isinstance(value, dict):
        return None
    if value.get("text"):
        return str(value["text"])
    if value.get("display"):
        return str(value["display"])
    for coding in value.get("coding") or []:
        if isinstance(coding, dict) and coding.get("display"):
            return str(coding["display"])
    for coding in value.get("coding") or []:
        if isinstance(coding, dict) and coding.get("code"):
            return str(coding["code"])
    return None


def first_code(value: Any) -> str | None:
    """The first code of a CodeableConcept, Coding or code string."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        for item in value:
            code = first_code(item)
            if code:
                return code
        return None
    if isinstance(value, dict):
        if isinstance(value.get("code"), str):
            return str(value["code"])
        for coding in value.get("coding") or []:
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                return str(coding["code"])
    return None


def absent_reason(resource: dict[str, Any], element: str = "value") -> str | None:
    """Why a value is missing, in words: `dataAbsentReason`, or the extension on `_element`."""
    reason = resource.get("dataAbsentReason")
    if reason:
        code = first_code(reason)
        return DATA_ABSENT.get(code or "") or concept_text(reason) or "Not recorded"
    shadow = resource.get(f"_{element}")
    if isinstance(shadow, dict):
        for ext in shadow.get("extension") or []:
            if isinstance(ext, dict) and ext.get("url") == DATA_ABSENT_URL:
                code = ext.get("valueCode")
                return DATA_ABSENT.get(str(code), "Not recorded")
    return None


def unit_words(unit: str | None) -> str:
    """A UCUM unit code as people write it (`mm[Hg]` -> `mmHg`, `{score}` -> nothing)."""
    if not unit:
        return ""
    return UNIT_WORDS.get(unit, unit)


def number(value: float, digits: int | None = None) -> str:
    """A measured number as precisely as the clinic sent it (`5.10` -> "5.10", `5` -> "5"),
    else without false precision (at most 3 significant decimals)."""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if digits is None and (sent := sent_places(value)) is not None:
        text = f"{value:,.{sent}f}"
        return text[1:] if text.startswith("-") and not text.strip("-0.,") else text
    if digits is None:
        magnitude = abs(value)
        digits = 0 if magnitude >= 100 else 1 if magnitude >= 10 else 2 if magnitude >= 1 else 3
    text = f"{value:,.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def quantity_text(quantity: Any) -> str | None:
    """A Quantity as `5.4 mmol/L`, with its comparator (`< 5`)."""
    if not isinstance(quantity, dict):
        return None
    value = quantity.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    code = quantity.get("code")
    unit = UNIT_WORDS[code] if code in UNIT_WORDS else unit_words(quantity.get("unit") or code)
    comparator = quantity.get("comparator") or ""
    text = f"{comparator}{number(value)}"
    return f"{text} {unit}" if unit else text


def value_text(resource: dict[str, Any]) -> str | None:
    """The `value[x]` of an Observation or component, as words (None when there is none)."""
    if "valueQuantity" in resource:
        return quantity_text(resource["valueQuantity"])
    if "valueCodeableConcept" in resource:
        return concept_text(resource["valueCodeableConcept"])
    if "valueString" in resource:
        return str(resource["valueString"])
    if "valueBoolean" in resource:
        return "Yes" if resource["valueBoolean"] else "No"
    if "valueInteger" in resource:
        return str(resource["valueInteger"])
    if "valueRange" in resource:
        return range_text(resource["valueRange"])
    if "valueRatio" in resource:
        ratio = resource["valueRatio"]
        num = quantity_text(ratio.get("numerator"))
        den = quantity_text(ratio.get("denominator"))
        return f"{num} / {den}" if num and den else num
    if "valueDateTime" in resource:
        return date_text(resource["valueDateTime"])
    if "valuePeriod" in resource:
        return period_text(resource["valuePeriod"])
    if "valueTime" in resource:
        return str(resource["valueTime"])
    return None


def range_text(value: Any) -> str | None:
    """A Range or reference range as `70-99 mg/dL`, `below 200 mg/dL`, `above 40 mg/dL`."""
    if not isinstance(value, dict):
        return None
    low = quantity_text(value.get("low"))
    high = quantity_text(value.get("high"))
    if low and high:
        low_num = low.split(" ", 1)[0]
        return f"{low_num}\u2013{high}"
    if high:
        return f"below {high}"
    if low:
        return f"above {low}"
    return str(value["text"]) if value.get("text") else None


def parse_date(value: Any) -> date | None:
    """The calendar date of a FHIR date as written; of a dateTime, the patient's own day."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    day = localtime.local_day(value)
    if day is not None:
        return day
    try:
        if len(value) == 4:
            return date(int(value), 1, 1)
        if len(value) == 7:
            return date(int(value[:4]), int(value[5:7]), 1)
        return date(int(value[:4]), int(value[5:7]), int(value[8:10]))
    except ValueError:
        return None


def date_text(value: Any) -> str | None:
    """A FHIR date/dateTime as `3 Mar 2023` (`Mar 2023`, `2023` when that is all we know)."""
    if isinstance(value, datetime):
        value = localtime.day_of(value)
    if isinstance(value, date):
        return f"{value.day} {MONTHS[value.month - 1]} {value.year}"
    parsed = parse_date(value)
    if parsed is None:
        return None
    assert isinstance(value, str)
    if len(value) == 4:
        return value
    if len(value) == 7:
        return f"{MONTHS[parsed.month - 1]} {parsed.year}"
    return f"{parsed.day} {MONTHS[parsed.month - 1]} {parsed.year}"


def period_text(period: Any) -> str | None:
    """A Period as `3 Mar 2023 - 5 Mar 2023`, `since 3 Mar 2023`, or one date."""
    if not isinstance(period, dict):
        return None
    start = date_text(period.get("start"))
    end = date_text(period.get("end"))
    if start and end:
        return start if start == end else f"{start} \u2013 {end}"
    if start:
        return f"since {start}"
    if end:
        return f"until {end}"
    return None


def when_text(resource: dict[str, Any], *elements: str) -> str | None:
    """The first date-ish element of `resource` among `elements`, as words."""
    for element in elements:
        value = resource.get(element)
        text = period_text(value) if isinstance(value, dict) else date_text(value)
        if text:
            return text
    return None


def age_text(birth: date, today: date) -> str:
    """Age as people say it: `34`, or months/weeks for small children."""
    years = today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
    if years >= 2:
        return f"{years}"
    months = (today.year - birth.year) * 12 + today.month - birth.month
    if today.day < birth.day:
        months -= 1
    if months >= 1:
        return f"{months} month" + ("s" if months != 1 else "")
    days = (today - birth).days
    weeks = days // 7
    if weeks >= 1:
        return f"{weeks} week" + ("s" if weeks != 1 else "")
    return f"{days} day" + ("s" if days != 1 else "")


def ago_text(moment: datetime, now: datetime) -> str:
    """How long ago, in rough words: `5 minutes ago`, `3 days ago`."""
    seconds = max(0, int((now - moment).total_seconds()))
    for size, one, many in (
        (365 * 86400, "year", "years"),
        (30 * 86400, "month", "months"),
        (7 * 86400, "week", "weeks"),
        (86400, "day", "days"),
        (3600, "hour", "hours"),
        (60, "minute", "minutes"),
    ):
        if seconds >= size:
            n = seconds // size
            return f"{n} {one if n == 1 else many} ago"
    return "just now"


def person_name(names: Any) -> str | None:
    """A HumanName list as `Given Family` (official or usual name first)."""
    if not isinstance(names, list) or not names:
        return None
    ranked = sorted(
        (n for n in names if isinstance(n, dict)),
        key=lambda n: {"usual": 0, "official": 1}.get(str(n.get("use")), 2),
    )
    for name in ranked:
        if name.get("text"):
            return str(name["text"])
        given = " ".join(str(g) for g in name.get("given") or [])
        family = str(name.get("family") or "")
        full = f"{given} {family}".strip()
        if full:
            prefix = " ".join(str(p) for p in name.get("prefix") or [])
            return f"{prefix} {full}".strip() if prefix.startswith("Dr") else full
    return None


def clean_name(text: str) -> str:
    """Synthea-style names carry digits (`Vito794`): drop them."""
    return "".join(ch for ch in text if not ch.isdigit()).strip()


def status_words(status: str | None) -> str | None:
    """A FHIR status code in words (`entered-in-error` never reaches a page)."""
    if not status:
        return None
    return STATUS_WORDS.get(status, status.replace("-", " ").capitalize())


STATUS_WORDS = {
    "active": "Active",
    "recurrence": "Came back",
    "relapse": "Came back",
    "inactive": "Inactive",
    "remission": "In remission",
    "resolved": "Resolved",
    "on-hold": "On hold",
    "completed": "Finished",
    "stopped": "Stopped",
    "cancelled": "Cancelled",
    "draft": "Draft",
    "unknown": "Status unknown",
    "not-done": "Not given",
    "final": "Final",
    "preliminary": "Preliminary",
    "amended": "Corrected",
    "corrected": "Corrected",
    "registered": "Ordered",
    "finished": "Finished",
    "in-progress": "In progress",
    "planned": "Planned",
    "proposed": "Proposed",
    "accepted": "Agreed",
    "achieved": "Achieved",
    "sustaining": "Keeping it up",
    "not-achieved": "Not achieved",
    "revoked": "Stopped",
    "current": "Current",
    "superseded": "Replaced",
}


def frequency_text(repeat: dict[str, Any]) -> str | None:
    """A Timing.repeat as `2 times a day`, `every 4 hours`."""
    frequency = repeat.get("frequency")
    period = repeat.get("period")
    unit = repeat.get("periodUnit")
    if unit not in PERIOD_UNITS or not isinstance(period, int | float):
        return None
    one, many = PERIOD_UNITS[unit]
    period_words = f"a {one}" if period == 1 else f"every {number(float(period))} {many}"
    if not isinstance(frequency, int) or frequency <= 1:
        if period == 1:
            return f"once a {one}" if unit != "h" else "every hour"
        return period_words
    times = "twice" if frequency == 2 else f"{frequency} times"
    return f"{times} {period_words}"


def dosage_text(dosage: Any) -> str | None:
    """A Dosage as a short sentence: its `text`, else dose, timing and `as needed`."""
    if not isinstance(dosage, dict):
        return None
    if dosage.get("text"):
        return str(dosage["text"])
    parts: list[str] = []
    for dose_rate in dosage.get("doseAndRate") or []:
        dose = quantity_text(dose_rate.get("doseQuantity")) if isinstance(dose_rate, dict) else None
        if dose:
            parts.append(f"Take {dose}" if dose[0].isdigit() else dose)
            break
    timing = dosage.get("timing")
    if isinstance(timing, dict):
        repeat = timing.get("repeat")
        freq = frequency_text(repeat) if isinstance(repeat, dict) else None
        if freq:
            parts.append(freq)
        elif timing.get("code"):
            parts.append(concept_text(timing["code"]) or "")
    route = concept_text(dosage.get("route"))
    if route:
        parts.append(route.lower())
    if dosage.get("asNeededBoolean") or dosage.get("asNeededCodeableConcept"):
        reason = concept_text(dosage.get("asNeededCodeableConcept"))
        parts.append(f"when needed for {reason.lower()}" if reason else "when needed")
    for extra in dosage.get("additionalInstruction") or []:
        text = concept_text(extra)
        if text:
            parts.append(text)
    sentence = ", ".join(p for p in parts if p)
    return sentence[:1].upper() + sentence[1:] if sentence else None


# A clinic writing more decimals than this sends a computed float (Synthea writes 15), not a
# measurement's precision: such numbers are rounded to what a measurement can mean.
MAX_SENT_PLACES = 4


def sent_places(value: Any) -> int | None:
    """The decimals a number was sent with when they are a precision (None: not known)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return 0
    places = places_of(value)
    return places if places is not None and places <= MAX_SENT_PLACES else None
