"""Names as people write them: clinics and places in their own case (not ALL CAPS), medicines
without RxNorm's technical notation, phone numbers grouped.

Everything here takes and returns plain text; templates escape it.
"""

from __future__ import annotations

import re
from typing import Any

# Short words that stay lower case inside a title ("Bank of America", "Walk-in").
SMALL_WORDS = frozenset(
    {"a", "an", "and", "as", "at", "by", "for", "in", "of", "on", "or", "the", "to", "via"}
)
# Abbreviations that stay in capitals in a name written in capitals.
ABBREVIATIONS = frozenset(
    {
        "LLC", "LLP", "PC", "PA", "PLLC", "MD", "DO", "RN", "NP", "DDS", "DMD", "OD", "PHD",
        "USA", "US", "VA", "UMASS", "YMCA", "YWCA", "HMO", "PPO", "EPO", "ENT", "ICU", "ER",
        "MRI", "CT", "II", "III", "IV", "VI", "VII", "VIII", "IX", "XI", "NE", "NW", "SE", "SW",
        "PO", "CVS", "HIV", "AIDS", "UCLA", "NYU", "MGH", "BID", "NHS", "GP",
    }
)  # fmt: skip
_WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")


def is_shouted(text: str) -> bool:
    """Whether a name is written in capitals only (and has at least two letters)."""
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= 2 and not any(c.islower() for c in letters)


def title_case(text: str) -> str:
    """A name in capitals as a title: "RIVERSIDE MEDICAL CENTER" -> "Riverside Medical Center",
    "SAINTS WALK-IN MEDICAL CENTER - URGENT CARE AND OCCUPATIONAL HEALTH" -> "Saints Walk-in
    Medical Center - Urgent Care and Occupational Health", "ST ELIZABETH'S" -> "St Elizabeth's",
    "LLC" stays "LLC"."""
    first = True

    def word(match: re.Match[str]) -> str:
        nonlocal first
        token = match.group(0)
        start = match.start()
        after_hyphen = start > 0 and text[start - 1] == "-" and text[start - 2 : start - 1] != " "
        was_first, first = first, False
        if token.upper() in ABBREVIATIONS:
            return token.upper()
        if len(token) == 1 and token.upper() != "A":
            return token  # "SUITE B", "BUILDING C"
        lower = token.lower()
        if not was_first and lower in SMALL_WORDS:
            return lower
        if after_hyphen and lower in SMALL_WORDS | {"up", "out", "off"}:
            return lower
        if token[0].isdigit():
            return lower if re.fullmatch(r"\d+(st|nd|rd|th)", lower) else token  # 3rd, 66B
        return lower[0].upper() + lower[1:]

    return _WORD.sub(word, text)


def plain_case(text: str | None) -> str | None:
    """A name in its own case; one written in capitals only becomes a title (see title_case)."""
    if not text:
        return text
    return title_case(text) if is_shouted(text) else text


def first_capital(text: str | None) -> str | None:
    """Text that starts a line, with its first letter in capitals and the rest as it is
    ("since 21 May 1963" -> "Since 21 May 1963"; Jinja's `capitalize` would write "may")."""
    return text[:1].upper() + text[1:] if text else text


def phone_text(value: str) -> str:
    """A phone number grouped for reading: "9789376000" -> "978-937-6000" (North American
    numbers); any other number as the clinic wrote it."""
    digits = re.sub(r"\D", "", value)
    if value.strip().isdigit() or re.fullmatch(r"[\d\s().+-]+", value.strip()):
        if len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        if len(digits) == 10:
            return f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"
    return value


# ---- medicines --------------------------------------------------------------------------

# RxNorm's units and abbreviations, as a label writes them.
_UNITS = {
    "MG": "mg",
    "MCG": "mcg",
    "G": "g",
    "ML": "mL",
    "L": "L",
    "UNT": "units",
    "MEQ": "mEq",
    "MMOL": "mmol",
    "ACTUAT": "actuation",
    "HR": "hour",
    "IU": "IU",
}
# RxNorm dose forms and salts: lower case inside a name ("Oral Tablet" -> "oral tablet").
_FORM_WORDS = frozenset(
    """oral tablet tablets capsule capsules injection injectable solution suspension prefilled
    syringe extended release delayed metered dose inhaler inhalation inhalant day pack vaginal ring
    mucosal spray drug implant auto-injector topical cream ointment gel lotion patch transdermal
    system nasal ophthalmic otic rectal suppository powder granules lozenge chewable
    disintegrating sublingual buccal film coated enteric foam shampoo kit product cartridge pen
    hydrochloride sodium potassium maleate acetate bitartrate hydrobromide succinate sulfate
    propionate citrate phosphate tartrate besylate mesylate fumarate calcium magnesium
    chloride bromide hydrate monohydrate dihydrate""".split()  # noqa: SIM905  # a word list reads better
)
_LEADING_COUNT = re.compile(r"^(?:NDA\d+\s+)?(\d+(?:\.\d+)?)\s+(ACTUAT|ML|HR|MG)\s+(?=\S)")
_NDA = re.compile(r"^NDA\d+\s+")
_BRAND = re.compile(r"\s*\[([^\]]+)\]\s*$")
_TALL_MAN = re.compile(r"^(?=.*[a-z])(?=.*[A-Z]{2})[A-Za-z]+$")  # "oxyCODONE", "DOCEtaxel"
_NUMBER_UNIT = re.compile(r"(\d+(?:\.\d+)?)\s+([A-Z]{1,6})(?:/([A-Z]{1,6}))?\b")
_EXTENDED = re.compile(r"\bExtended Release\b", re.I)


def medicine_name(text: str | None) -> str | None:
    """A medicine's RxNorm-style name as a label reads: "200 ACTUAT Albuterol 0.09 MG/ACTUAT
    Metered Dose Inhaler" -> "Albuterol 0.09 mg/actuation inhaler", "24 HR metoprolol succinate
    100 MG Extended Release Oral Tablet [Toprol]" -> "Metoprolol succinate 100 mg 24-hour
    extended-release oral tablet (Toprol)", "0.25 ML Leuprolide Acetate 30 MG/ML Prefilled
    Syringe" -> "Leuprolide acetate 30 mg/mL prefilled syringe (0.25 mL)"."""
    if not text:
        return text
    name = " ".join(text.split())
    brand = None
    if found := _BRAND.search(name):
        brand, name = found.group(1), name[: found.start()]
    name = _NDA.sub("", name)
    amount = None
    hours = None
    if found := _LEADING_COUNT.match(name):
        value, unit = found.groups()
        name = name[found.end() :]
        if unit == "ML":
            amount = f"{value} mL"
        elif unit == "HR":
            hours = value
        elif unit == "MG":
            amount = f"{value} mg"
        # "200 ACTUAT": how many puffs the inhaler holds, not what to take.
    name = re.sub(r"\bMetered Dose Inhaler\b", "inhaler", name, flags=re.I)
    if hours:
        name = _EXTENDED.sub(f"{hours}-hour extended-release", name)
    else:
        name = _EXTENDED.sub("extended-release", name)
    name = re.sub(r"\b(\d+)HR\b", r"\1 hours", name)
    name = _units(name)
    words: list[str] = []
    for token in name.split(" "):
        if _TALL_MAN.match(token) or (is_shouted(token) and len(token) > 3):
            token = token.lower()  # tall-man lettering and words in capitals, as words
        elif words and token.rstrip(",").lower() in _FORM_WORDS:
            token = token.lower()
        elif words and words[-1] == "/" and token.istitle() and token.isalpha():
            token = token.lower()  # the second ingredient of a combination
        words.append(token)
    name = " ".join(words).strip(" ,")
    name = name[:1].upper() + name[1:]
    extras = [x for x in (brand, amount) if x]
    return f"{name} ({', '.join(extras)})" if extras else name


def _units(name: str) -> str:
    """Units that follow a number ("0.09 MG/ACTUAT" -> "0.09 mg/actuation")."""
    return _NUMBER_UNIT.sub(_unit_words, name)


def _unit_words(match: re.Match[str]) -> str:
    number, top, bottom = match.groups()
    if top not in _UNITS or (bottom is not None and bottom not in _UNITS):
        return match.group(0)
    words = _UNITS[top] + (f"/{_UNITS[bottom]}" if bottom else "")
    return f"{number} {words}"


# Code systems by the name a "Details" line gives them.
SYSTEM_NAMES = {
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://snomed.info/sct": "SNOMED CT",
    "http://hl7.org/fhir/sid/ndc": "NDC",
    "http://loinc.org": "LOINC",
    "http://hl7.org/fhir/sid/cvx": "CVX",
}


def coded_as(concept: Any) -> tuple[str, ...]:
    """How a CodeableConcept was coded, for a "Details" element: the clinic's own text when
    it differs from a coding's name, then each coding as "RxNorm 313782: Amoxicillin 250 MG
    Oral Capsule" (the codes are shown nowhere else)."""
    if not isinstance(concept, dict):
        return ()
    lines = []
    text = concept.get("text")
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    displays = {str(c.get("display")) for c in codings if c.get("display")}
    if isinstance(text, str) and text and text not in displays:
        lines.append(f"As your clinic wrote it: {text}")
    for coding in codings:
        system = SYSTEM_NAMES.get(str(coding.get("system")), "Code")
        code = coding.get("code")
        display = coding.get("display")
        head = f"{system} {code}" if code else system
        lines.append(f"{head}: {display}" if display else head)
    return tuple(lines)


# Category codes of FHIR and HL7 code systems, in words (a category coded without a display
# shows these words, and a code not listed here is never shown).
CATEGORY_WORDS = {
    "clinical-note": "Clinical note",
    "vital-signs": "Vital signs",
    "vital-sign": "Vital signs",
    "laboratory": "Lab results",
    "LAB": "Lab results",
    "imaging": "Imaging",
    "RAD": "Imaging",
    "social-history": "Social history",
    "survey": "Questionnaire",
    "exam": "Examination",
    "procedure": "Procedure",
    "therapy": "Therapy",
    "activity": "Activity",
    "problem-list-item": "Health problem",
    "encounter-diagnosis": "Diagnosis at a visit",
    "health-concern": "Symptom or concern",
    "assess-plan": "Assessment and plan",
    "careteam": "Care team",
    "longitudinal": "Care team",
    "encounter": "Care team for a visit",
    "episode": "Care team",
    "CAR": "Heart",
    "CT": "CT scan",
    "MR": "MRI scan",
    "US": "Ultrasound",
    "PAT": "Pathology",
    "MB": "Microbiology",
    "HM": "Blood tests",
    "CH": "Chemistry",
    "CP": "Cytopathology",
    "GE": "Genetics",
    "SP": "Surgical pathology",
}


def category_text(value: Any) -> str | None:
    """A category (CodeableConcept, Coding, or a list of them) in words: its text or display,
    else the words for its code; never a bare code."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("text"):
            return str(item["text"])
        codings = [c for c in item.get("coding") or [] if isinstance(c, dict)]
        if "code" in item or "display" in item:
            codings.append(item)
        for coding in codings:
            if coding.get("display"):
                return str(coding["display"])
        for coding in codings:
            words = CATEGORY_WORDS.get(str(coding.get("code")))
            if words:
                return words
    return None
