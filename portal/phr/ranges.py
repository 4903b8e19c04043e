"""Usual ranges ("reference ranges"), flags in words, and blood pressure categories.

What a result is compared with, in order:
1. the clinic's own `interpretation` (H, L, N...): the lab knows its method and the patient;
2. the clinic's own `referenceRange` (the one for the patient's age, when it says);
3. else the built-in table below, by LOINC code *and unit*, for the patient's age (adult,
   or child where the usual range differs) and sex (where it differs) on the day of the test.
A result in a unit the table does not list gets no range: no conversion is guessed, so no
flag can be wrong because of a unit.

Sources of the built-in table (general ranges for adults in US units, as published; every lab
has its own, and says so on its reports):
- MedlinePlus (U.S. National Library of Medicine), "Normal results" of each lab test page:
  "Comprehensive metabolic panel" (https://medlineplus.gov/ency/article/003468.htm),
  "Basic metabolic panel" (https://medlineplus.gov/ency/article/003462.htm),
  "Complete blood count" (https://medlineplus.gov/ency/article/003642.htm), "Blood
  differential test", "Urinalysis", "Urine specific gravity", "Urine pH", "TSH test", "Free T4
  test", "Magnesium blood test", "Phosphorus blood test", "Uric acid blood test", "Gamma-GT
  blood test", "LDH test", "Serum iron test", "Ferritin blood test", "Vitamin B12 level",
  "Folic acid test", "Prothrombin time (PT)", "Partial thromboplastin time (PTT)",
  "C-reactive protein", "Sed rate", "BNP test", "Serum globulin", "Bilirubin blood test",
  "Body temperature norms", "Pulse oximetry".
- Lipids: NCEP Adult Treatment Panel III (NIH publication 02-5215, 2002), "desirable"/
  "optimal" levels; children: NHLBI Expert Panel on Cardiovascular Health and Risk Reduction
  in Children and Adolescents (Pediatrics 2011;128 Suppl 5), "acceptable" levels.
- HbA1c and fasting glucose: American Diabetes Association, Standards of Care in Diabetes
  (Diabetes Care 2024;47 Suppl 1), section 2: below 5.7 % and 70-99 mg/dL are not prediabetes.
- eGFR and albumin/creatinine ratio: KDIGO 2012 Clinical Practice Guideline for CKD
  (Kidney Int Suppl 2013;3:1-150): G1-G2 (60 or more) and A1 (below 30 mg/g).
- PSA: the 4.0 ng/mL threshold most labs use (National Cancer Institute, "Prostate-Specific
  Antigen (PSA) Test" fact sheet). NT-proBNP: 2021 ESC Heart Failure Guidelines (below 125
  pg/mL; below 450 from age 75, as labs commonly report). Vitamin D: NIH Office of Dietary
  Supplements, "Vitamin D" fact sheet (20-50 ng/mL adequate). Faecal immunochemical test: the
  100 ng/mL cut-off of the common OC-Sensor assay.
- CBC of children aged 1-17 and analyser-only indices (RDW-SD, PDW, MPV): The Harriet Lane
  Handbook (Johns Hopkins, 22nd ed., 2021), chapter "Hematology", and the typical intervals
  of automated analysers.
- Vital signs: American Heart Association, "All About Heart Rate (Pulse)" (60-100 a minute)
  and "Understanding Blood Pressure Readings" (https://www.heart.org/en/health-topics/
  high-blood-pressure/understanding-blood-pressure-readings; the 2017 ACC/AHA guideline's
  categories); Johns Hopkins Medicine, "Vital Signs" (12-20 breaths a minute); CDC "Adult
  BMI" (18.5 to below 25).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from portal.models import FhirRecord
from portal.phr import measures, units
from portal.phr.classify import codes_of
from portal.phr.records import Records
from portal.phr.words import number, parse_date, unit_words

UCUM = "http://unitsofmeasure.org"
# v3 ObservationInterpretation codes that mean "outside the normal range", in words.
FLAGS = {
    "H": "High",
    "HU": "Very high",
    "HH": "Critically high",
    "L": "Low",
    "LU": "Very low",
    "LL": "Critically low",
    "A": "Abnormal",
    "AA": "Critically abnormal",
    ">": "Above what the test can measure",
    "<": "Below what the test can measure",
    "POS": "Positive",
    "DET": "Detected",
    "R": "Resistant",
    "W": "Worse",
}
NORMAL = {"N", "NEG", "ND", "S", "B", "I"}
ADULT = 18  # years: the built-in table's adult ranges apply from this age
NO_RANGE = "No usual range is known for this test"


@dataclass(frozen=True)
class Flag:
    code: str  # H, L, A... (a letter people know from paper results)
    words: str  # "High"
    direction: str  # "high" | "low" | "other"
    detail: str | None = None  # "Above the usual range", "Marked high by your clinic"


# ---- the built-in table -------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A usual range for some ages (completed years, from inclusive, to exclusive) and sex."""

    low: Decimal | None
    high: Decimal | None
    ages: tuple[int, int | None] = (ADULT, None)
    sex: str | None = None  # "male" | "female"; None: either
    below: bool = False  # the usual value is below `high` (not up to and including it)


@dataclass(frozen=True)
class Entry:
    """What the table knows of one test: usual ranges per unit, or a usual coded result."""

    units: dict[str, tuple[Interval, ...]]
    usual: str | None = None  # for coded results: "negative", "clear"
    unusual_codes: frozenset[str] = frozenset()  # SNOMED CT codes of results that are not


def _d(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def adult(low: str | None, high: str | None, *, below: bool = False) -> Interval:
    return Interval(_d(low), _d(high), below=below)


def ages(
    start: int, end: int | None, low: str | None, high: str | None, *, below: bool = False
) -> Interval:
    return Interval(_d(low), _d(high), (start, end), below=below)


def men(low: str | None, high: str | None, start: int = ADULT, end: int | None = None) -> Interval:
    return Interval(_d(low), _d(high), (start, end), "male")


def women(
    low: str | None, high: str | None, start: int = ADULT, end: int | None = None
) -> Interval:
    return Interval(_d(low), _d(high), (start, end), "female")


def one(unit: str, *intervals: Interval) -> Entry:
    return Entry({unit: intervals})


def coded(usual: str, *unusual: str) -> Entry:
    return Entry({}, usual, frozenset(unusual))


# The usual range from age 1 (the same for children and adults); infants get none.
def from_one(low: str | None, high: str | None, *, below: bool = False) -> Interval:
    return ages(1, None, low, high, below=below)


_GLUCOSE = Entry(
    {"mg/dL": (from_one("70", "99"),), "mmol/L": (from_one("3.9", "5.5"),)}  # fasting
)
_UREA_N = one("mg/dL", adult("6", "20"), ages(1, ADULT, "5", "18"))
_CREATININE = Entry(
    {
        "mg/dL": (
            men("0.74", "1.35"),
            women("0.59", "1.04"),
            adult("0.59", "1.35"),
            ages(1, 12, "0.3", "0.7"),
            ages(12, ADULT, "0.5", "1.0"),
        ),
        "umol/L": (men("65", "119"), women("52", "92"), adult("52", "119")),
    }
)
_CALCIUM = one("mg/dL", adult("8.5", "10.2"), ages(1, ADULT, "8.8", "10.8"))
_SODIUM = one("mmol/L", from_one("135", "145"))
_POTASSIUM = one("mmol/L", adult("3.7", "5.2"), ages(1, ADULT, "3.4", "4.7"))
_CHLORIDE = one("mmol/L", from_one("96", "106"))
_CO2 = one("mmol/L", adult("23", "29"), ages(1, ADULT, "20", "28"))
_EGFR = one("mL/min/{1.73_m2}", adult("60", None))
_CHOLESTEROL = Entry(
    {
        "mg/dL": (adult(None, "200", below=True), ages(2, ADULT, None, "170", below=True)),
        "mmol/L": (adult(None, "5.2", below=True), ages(2, ADULT, None, "4.4", below=True)),
    }
)
_TRIGLYCERIDES = Entry(
    {
        "mg/dL": (
            adult(None, "150", below=True),
            ages(10, ADULT, None, "90", below=True),
            ages(2, 10, None, "75", below=True),
        ),
        "mmol/L": (adult(None, "1.7", below=True),),
    }
)
_LDL = Entry(
    {
        "mg/dL": (adult(None, "100", below=True), ages(2, ADULT, None, "110", below=True)),
        "mmol/L": (adult(None, "2.6", below=True), ages(2, ADULT, None, "2.8", below=True)),
    }
)
_HDL = Entry(
    {
        "mg/dL": (
            men("40", None),
            women("50", None),
            adult("40", None),
            ages(2, ADULT, "45", None),
        ),
        "mmol/L": (men("1.0", None), women("1.3", None), adult("1.0", None)),
    }
)
_HBA1C = one("%", from_one(None, "5.7", below=True))
_WBC = Entry(
    {
        "10*3/uL": (adult("4.5", "11.0"), ages(1, ADULT, "4.5", "13.5")),
        "10*9/L": (adult("4.5", "11.0"), ages(1, ADULT, "4.5", "13.5")),
    }
)
_RBC = Entry(
    {
        unit: (
            men("4.7", "6.1"),
            women("4.2", "5.4"),
            adult("4.2", "6.1"),
            ages(1, ADULT, "4.0", "5.5"),
        )
        for unit in ("10*6/uL", "10*12/L")
    }
)
_HEMOGLOBIN = one(
    "g/dL",
    men("13.2", "16.6"),
    women("11.6", "15.0"),
    adult("11.6", "16.6"),
    ages(1, ADULT, "11.5", "15.5"),
)
_HEMATOCRIT = one(
    "%",
    men("38.3", "48.6"),
    women("35.5", "44.9"),
    adult("35.5", "48.6"),
    ages(1, ADULT, "35", "45"),
)
_PLATELETS = Entry({unit: (from_one("150", "400"),) for unit in ("10*3/uL", "10*9/L")})
_TSH = Entry({unit: (adult("0.5", "5.0"),) for unit in ("m[IU]/L", "u[IU]/mL")})
_URINE_SG = one("{nominal}", from_one("1.005", "1.030"))
_URINE_PH = one("pH", from_one("4.5", "8.0"))
_NONE_FOUND = one("mg/dL", from_one(None, "0"))  # a test strip: usually finds none

TABLE: dict[str, Entry] = {
    # Basic and comprehensive metabolic panels
    "2339-0": _GLUCOSE,  # Glucose [Mass/volume] in Blood
    "2345-7": _GLUCOSE,  # Glucose [Mass/volume] in Serum or Plasma
    "1558-6": _GLUCOSE,  # Fasting glucose
    "6299-2": _UREA_N,  # Urea nitrogen in Blood
    "3094-0": _UREA_N,  # Urea nitrogen in Serum or Plasma
    "38483-4": _CREATININE,  # Creatinine in Blood
    "2160-0": _CREATININE,  # Creatinine in Serum or Plasma
    "49765-1": _CALCIUM,  # Calcium in Blood
    "17861-6": _CALCIUM,  # Calcium in Serum or Plasma
    "2947-0": _SODIUM,  # Sodium in Blood
    "2951-2": _SODIUM,  # Sodium in Serum or Plasma
    "6298-4": _POTASSIUM,  # Potassium in Blood
    "2823-3": _POTASSIUM,  # Potassium in Serum or Plasma
    "2069-3": _CHLORIDE,  # Chloride in Blood
    "2075-0": _CHLORIDE,  # Chloride in Serum or Plasma
    "20565-8": _CO2,  # Carbon dioxide in Blood
    "2028-9": _CO2,  # Carbon dioxide in Serum or Plasma
    "33914-3": _EGFR,  # eGFR (MDRD)
    "62238-1": _EGFR,  # eGFR (CKD-EPI)
    "98979-8": _EGFR,  # eGFR (CKD-EPI 2021)
    "48642-3": _EGFR,  # eGFR (non-Black)
    "48643-1": _EGFR,  # eGFR (Black)
    "2885-2": one("g/dL", adult("6.0", "8.3")),  # Protein
    "1751-7": one("g/dL", adult("3.4", "5.4")),  # Albumin
    "10834-0": one("g/dL", adult("2.0", "3.5")),  # Globulin
    "1975-2": one("mg/dL", adult("0.1", "1.2")),  # Bilirubin, total
    "1968-7": one("mg/dL", adult(None, "0.3", below=True)),  # Bilirubin, direct
    "6768-6": one("U/L", adult("44", "147")),  # Alkaline phosphatase
    "1742-6": one("U/L", adult("4", "36")),  # ALT
    "1920-8": one("U/L", adult("8", "33")),  # AST
    "2324-2": one("U/L", adult("5", "40")),  # GGT
    "14804-9": one("U/L", adult("105", "333")),  # LDH
    "19123-9": one("mg/dL", adult("1.7", "2.2")),  # Magnesium
    "2777-1": one("mg/dL", adult("2.8", "4.5")),  # Phosphate
    "3084-1": one("mg/dL", adult("3.5", "7.2")),  # Uric acid
    # Lipids
    "2093-3": _CHOLESTEROL,  # Cholesterol, total
    "2571-8": _TRIGLYCERIDES,  # Triglycerides
    "18262-6": _LDL,  # LDL cholesterol (direct assay)
    "13457-7": _LDL,  # LDL cholesterol (calculated)
    "2089-1": _LDL,  # LDL cholesterol
    "2085-9": _HDL,  # HDL cholesterol
    # Diabetes and kidneys
    "4548-4": _HBA1C,  # Hemoglobin A1c
    "17856-6": _HBA1C,  # Hemoglobin A1c (HPLC)
    "14959-1": one("mg/g", adult(None, "30", below=True)),  # Albumin/creatinine ratio
    # Complete blood count
    "6690-2": _WBC,  # Leukocytes
    "789-8": _RBC,  # Erythrocytes
    "718-7": _HEMOGLOBIN,  # Hemoglobin
    "4544-3": _HEMATOCRIT,  # Hematocrit (automated)
    "20570-8": _HEMATOCRIT,  # Hematocrit
    "787-2": one("fL", adult("80", "100"), ages(1, ADULT, "75", "95")),  # MCV
    "785-6": one("pg", adult("27", "31"), ages(1, ADULT, "25", "33")),  # MCH
    "786-4": one("g/dL", from_one("32", "36")),  # MCHC
    "21000-5": one("fL", adult("39", "46")),  # RDW (RDW-SD, in fL)
    "788-0": one("%", adult("11.8", "16.1")),  # RDW (RDW-CV, in %)
    "777-3": _PLATELETS,  # Platelets
    "32207-3": one("fL", adult("9", "17")),  # Platelet distribution width
    "32623-1": one("fL", adult("7.5", "11.5")),  # Mean platelet volume
    "770-8": one("%", adult("40", "60")),  # Neutrophils
    "736-9": one("%", adult("20", "40")),  # Lymphocytes
    "5905-5": one("%", adult("2", "8")),  # Monocytes
    "713-8": one("%", adult("1", "4")),  # Eosinophils
    "706-2": one("%", adult("0.5", "1")),  # Basophils
    # Thyroid, iron, vitamins, inflammation, clotting, heart
    "3016-3": _TSH,  # TSH
    "11579-0": _TSH,  # TSH (sensitive method)
    "3024-7": one("ng/dL", adult("0.9", "2.3")),  # Free T4
    "2498-4": one("ug/dL", adult("60", "170")),  # Iron
    "2276-4": one("ng/mL", men("24", "336"), women("11", "307"), adult("11", "336")),  # Ferritin
    "2132-9": one("pg/mL", adult("160", "950")),  # Vitamin B12
    "2284-8": one("ng/mL", adult("2.7", "17.0")),  # Folate
    "1989-3": one("ng/mL", adult("20", "50")),  # Vitamin D (25-hydroxy)
    "1988-5": one("mg/L", adult(None, "10", below=True)),  # C-reactive protein
    "4537-7": one(  # Erythrocyte sedimentation rate
        "mm/h",
        men(None, "15", ADULT, 50),
        men(None, "20", 50),
        women(None, "20", ADULT, 50),
        women(None, "30", 50),
    ),
    "5902-2": one("s", adult("11", "13.5")),  # Prothrombin time
    "6301-6": one("{INR}", adult("0.8", "1.1")),  # INR
    "3173-2": one("s", adult("30", "40")),  # aPTT
    "30934-4": one("pg/mL", adult(None, "100", below=True)),  # BNP
    "33762-6": one(  # NT-proBNP
        "pg/mL", ages(ADULT, 75, None, "125", below=True), ages(75, None, None, "450", below=True)
    ),
    "2857-1": one("ng/mL", men(None, "4.0")),  # PSA (for men only)
    "57905-2": one("ng/mL", adult(None, "100", below=True)),  # Faecal immunochemical test
    # Urinalysis (test strip)
    "5811-5": _URINE_SG,  # Specific gravity (strip)
    "2965-2": _URINE_SG,  # Specific gravity
    "5803-2": _URINE_PH,  # pH (strip)
    "2756-5": _URINE_PH,  # pH
    "5792-7": _NONE_FOUND,  # Glucose (strip, amount)
    "20505-4": _NONE_FOUND,  # Bilirubin (strip, amount)
    "5797-6": _NONE_FOUND,  # Ketones (strip, amount)
    "5804-0": _NONE_FOUND,  # Protein (strip, amount)
    # Coded strip results: the SNOMED CT findings that are not the usual result (only those
    # named here are flagged; any other finding is shown as the clinic wrote it, unflagged).
    "25428-4": coded("negative", "167265006"),  # Glucose: "++"
    "5770-3": coded("negative"),  # Bilirubin
    "2514-8": coded("negative", "167288007"),  # Ketones: "trace"
    "20454-5": coded("negative", "167275009"),  # Protein: "+"
    "5802-4": coded("negative"),  # Nitrite
    "5794-3": coded("negative"),  # Blood
    "5799-2": coded("negative"),  # Leukocyte esterase
    "5778-6": coded("pale yellow to amber", "371254008"),  # Colour: brown
    "32167-9": coded("clear", "7766007"),  # Clarity: cloudy
    "5767-9": coded("a mild smell"),  # Odour
}

# Vital signs, by the kind's key in portal.phr.vitals (its chart unit).
VITALS: dict[str, Entry] = {
    "heart-rate": one("/min", adult("60", "100")),
    "breathing": one("/min", adult("12", "20")),
    # MedlinePlus "Body temperature norms": normal ranges from 36.1 °C, and 38 °C or more
    # most often means a fever; flagging 37.3 °C as high would alarm without cause.
    "temperature": one("Cel", ages(0, None, "36.1", "37.9")),
    "oxygen": one("%", ages(0, None, "95", "100")),
    "bmi": one("kg/m2", adult("18.5", "25", below=True)),
}


# ---- who the record is about ----------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    born: date | None
    sex: str | None  # "male" | "female" | None


_PEOPLE: weakref.WeakKeyDictionary[Records, Person] = weakref.WeakKeyDictionary()


def person(records: Records) -> Person:
    """The birth date and sex the clinics' Patient resources give (read once per reader)."""
    if records in _PEOPLE:
        return _PEOPLE[records]
    born = sex = None
    for row in records.rows(
        ["patient"], where=[FhirRecord.resource_type == "Patient"], elements=("birthDate", "gender")
    ):
        born = born or parse_date(row.raw.get("birthDate"))
        gender = row.raw.get("gender")
        sex = sex or (gender if gender in ("male", "female") else None)
    found = Person(born, sex)
    _PEOPLE[records] = found
    return found


def age_on(born: date | None, day: date | None) -> int | None:
    """Completed years on `day` (None when either date is unknown)."""
    if born is None or day is None:
        return None
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def day_of(raw: dict[str, Any], at: datetime | None) -> date | None:
    """The day a result was taken, as the clinic wrote it."""
    return (
        parse_date(raw.get("effectiveDateTime"))
        or parse_date((raw.get("effectivePeriod") or {}).get("start"))
        or parse_date(raw.get("issued"))
        or (at.date() if at else None)
    )


# ---- the range that applies to one result ---------------------------------------------------


@dataclass(frozen=True)
class Usual:
    """The usual range a result is compared with, in `unit`."""

    low: Decimal | None
    high: Decimal | None
    unit: str | None
    below: bool = False  # usual values are below `high`
    text: str | None = None  # the clinic's words for it
    built_in: bool = False  # from the table, not from the clinic
    who: str | None = None  # whom the built-in range is for: "adults", "women", "children"
    usual_result: str | None = None  # coded results: what is usual ("negative")
    substance: str | None = None  # what was measured, when mass and amount convert (glucose)

    def bounds_in(self, unit: str | None) -> tuple[float | None, float | None]:
        """The bounds as floats in another unit (for a chart), when that is safe."""

        def convert(value: Decimal | None) -> float | None:
            if value is None:
                return None
            return (
                units.convert(float(value), self.unit, unit, self.substance)
                if unit != self.unit
                else float(value)
            )

        return convert(self.low), convert(self.high)

    def words(self, unit: str | None = None) -> str | None:
        """The range in words, in `unit` (its own by default): "3.5-5.1 mmol/L"."""
        if self.usual_result:
            return f"usually {self.usual_result}"
        target = unit or self.unit
        low, high = self.bounds_in(target)
        if (self.low is not None and low is None) or (self.high is not None and high is None):
            low, high, target = (
                float(self.low) if self.low is not None else None,
                float(self.high) if self.high is not None else None,
                self.unit,
            )
        label = unit_words(target)
        if low is not None and high is not None and self.below:
            text = f"{number(low)} to below {number(high)} {label}"
        elif low is not None and high is not None:
            text = f"{number(low)}\u2013{number(high)} {label}"
        elif high is not None:
            text = f"{'below' if self.below else 'up to'} {number(high)} {label}"
            if high == 0:
                text = "none found"
        elif low is not None:
            text = (
                f"{number(low)} or more {label}"
                if self.built_in
                else f"above {number(low)} {label}"
            )
        else:
            text = self.text or ""
        if self.text and (low is not None or high is not None):
            text = f"{text.strip()} ({self.text})"
        return text.strip() or None

    @property
    def source_words(self) -> str | None:
        """Where the range comes from, when it is not the clinic's."""
        if not self.built_in:
            return None
        return f"a general range for {self.who or 'adults'}; your clinic did not send one"


def decimal(value: Any) -> Decimal | None:
    """A FHIR decimal as a Decimal (JSON numbers arrive as float: their shortest form)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        found = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        return None
    return found if found.is_finite() else None


def unit_of(quantity: dict[str, Any]) -> str | None:
    """The unit to compute with: the UCUM code when there is one, else the unit text."""
    if quantity.get("code") and quantity.get("system", UCUM) == UCUM:
        return str(quantity["code"])
    unit = quantity.get("unit") or quantity.get("code")
    return str(unit) if unit else None


def usual_range(
    raw: dict[str, Any], unit: str | None, at: datetime | None, who: Person | None
) -> Usual | None:
    """The clinic's range for this result, else the table's for its code, unit and patient."""
    age = age_on(who.born, day_of(raw, at)) if who else None
    code = _loinc(raw)
    found = clinic_range(raw, unit, age)
    if found is None:
        entry = TABLE.get(code or "")
        found = built_in(entry, unit, age, who.sex if who else None) if entry else None
    substance = measures.substance_of(code)  # glucose ranges shown in mmol/L or mg/dL alike
    return replace(found, substance=substance) if found is not None and substance else found


def clinic_range(raw: dict[str, Any], unit: str | None, age: int | None) -> Usual | None:
    """The clinic's reference range for this patient's age, its bounds in `unit`."""
    candidates = [r for r in raw.get("referenceRange") or [] if isinstance(r, dict)]
    fitting = [r for r in candidates if _fits_age(r.get("age"), age)]
    normal = [r for r in fitting if _is_normal_type(r.get("type"))]
    chosen = next(iter(normal or fitting), None)
    if chosen is None:
        return None
    bounds: list[Decimal | None] = []
    for end in ("low", "high"):
        q = chosen.get(end)
        value = decimal(q.get("value")) if isinstance(q, dict) else None
        if value is not None and isinstance(q, dict):
            own = unit_of(q) or unit
            if own != unit:
                value = _convert(value, own, unit)
        bounds.append(value)
    text = str(chosen["text"]) if chosen.get("text") else None
    if bounds == [None, None] and text is None:
        return None
    return Usual(bounds[0], bounds[1], unit, text=text)


def built_in(entry: Entry, unit: str | None, age: int | None, sex: str | None) -> Usual | None:
    """The table's range for a result in `unit` of a patient of this age and sex."""
    if entry.usual is not None:
        return Usual(None, None, None, built_in=True, who="everyone", usual_result=entry.usual)
    intervals = entry.units.get(unit or "")
    if not intervals:
        return None  # another unit: no guess
    years = ADULT if age is None else age  # no birth date: the adult range, said as such
    for interval in intervals:
        start, end = interval.ages
        if years < start or (end is not None and years >= end):
            continue
        if interval.sex is not None and interval.sex != sex:
            continue
        return Usual(
            interval.low,
            interval.high,
            unit,
            below=interval.below,
            built_in=True,
            who=_who(interval, age),
        )
    return None


def _who(interval: Interval, age: int | None) -> str:
    """Whom a range is for, said of the patient's own group: "women", "children aged 1-17"."""
    start, end = interval.ages
    adult = age is None or age >= ADULT
    people = "adults" if adult else "children"
    if interval.sex and adult:
        people = {"male": "men", "female": "women"}[interval.sex]
    elif interval.sex:
        people = {"male": "boys", "female": "girls"}[interval.sex]
    if (start, end) in ((ADULT, None), (0, None), (1, None)):
        return people
    if end is None:
        return f"{people} aged {start} and over"
    return f"{people} aged {start}\u2013{end - 1}"


def missing_words(raw: dict[str, Any], unit: str | None) -> str:
    """Why there is no range, in words: the table may know the test in another unit."""
    entry = TABLE.get(_loinc(raw) or "")
    if entry and entry.units and unit not in entry.units:
        known = ", ".join(unit_words(u) or u for u in entry.units)
        return (
            f"{NO_RANGE} in {unit_words(unit) or 'this unit'} "
            f"(the portal knows one for results in {known})."
        )
    return f"{NO_RANGE}."


def _loinc(raw: dict[str, Any]) -> str | None:
    for coding in (raw.get("code") or {}).get("coding") or []:
        if isinstance(coding, dict) and coding.get("system") == "http://loinc.org":
            return str(coding.get("code"))
    codes = codes_of(raw.get("code"))
    return codes[0] if codes else None


def _fits_age(rng: Any, age: int | None) -> bool:
    if not isinstance(rng, dict) or age is None:
        return True
    low = decimal((rng.get("low") or {}).get("value"))
    high = decimal((rng.get("high") or {}).get("value"))
    return (low is None or age >= low) and (high is None or age <= high)


def _is_normal_type(value: Any) -> bool:
    return value is None or "normal" in codes_of(value)


def _convert(value: Decimal, from_unit: str | None, to_unit: str | None) -> Decimal | None:
    converted = units.convert(float(value), from_unit, to_unit)
    return None if converted is None else Decimal(repr(round(converted, 9)))


# ---- flags -------------------------------------------------------------------------------


def flag(raw: dict[str, Any], value: Decimal | None, usual: Usual | None) -> Flag | None:
    """A flag from the clinic's interpretation, else from comparing with the usual range."""
    codes = codes_of(raw.get("interpretation"))
    for code in codes:
        if code in FLAGS:
            direction = "high" if code.startswith("H") or code == ">" else "other"
            direction = "low" if code.startswith("L") or code == "<" else direction
            return Flag(code, FLAGS[code], direction, "As marked by your clinic")
    if any(code in NORMAL for code in codes) or usual is None:
        return None
    if usual.usual_result is not None:
        return _coded_flag(raw)
    if value is None:
        return None
    if usual.high is not None and (value >= usual.high if usual.below else value > usual.high):
        return Flag("H", "High", "high", "Above the usual range")
    if usual.low is not None and value < usual.low:
        return Flag("L", "Low", "low", "Below the usual range")
    return None


def _coded_flag(raw: dict[str, Any]) -> Flag | None:
    entry = TABLE.get(_loinc(raw) or "")
    found = set(codes_of(raw.get("valueCodeableConcept")))
    if entry and found & entry.unusual_codes:
        return Flag("A", "Not the usual result", "other", f"Usually {entry.usual}")
    return None


# ---- blood pressure ------------------------------------------------------------------------


@dataclass(frozen=True)
class Category:
    key: str  # normal | elevated | stage-1 | stage-2 | crisis
    words: str


BP_CATEGORIES = {
    "normal": "Normal",
    "elevated": "Elevated",
    "stage-1": "High blood pressure (stage 1)",
    "stage-2": "High blood pressure (stage 2)",
    "crisis": "Hypertensive crisis (very high)",
}


BP_NORMAL_TOP, BP_NORMAL_BOTTOM = 120, 80  # mmHg: normal is below both


def bp_category(systolic: Decimal | None, diastolic: Decimal | None) -> Category | None:
    """The AHA category of an adult's reading (the higher of the two numbers decides)."""
    if systolic is None or diastolic is None:
        return None
    if systolic > 180 or diastolic > 120:
        key = "crisis"
    elif systolic >= 140 or diastolic >= 90:
        key = "stage-2"
    elif systolic >= 130 or diastolic >= 80:
        key = "stage-1"
    elif systolic >= BP_NORMAL_TOP:
        key = "elevated"
    else:
        key = "normal"
    return Category(key, BP_CATEGORIES[key])
