"""What a patient can measure and record themselves: codes, units and plausible ranges.

A built-in subset of LOINC for vitals and measurements, with the UCUM units the form offers.
Ranges are wide on purpose: they catch typing mistakes (a weight of 7000 kg), not illness.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from portal.phr import units

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


def _unit(code: str, label: str, base: str, substance: str | None = None) -> Unit:
    """A unit the form offers, converted into the measure's first unit by the UCUM table."""

    def to_base(value: float) -> float:
        converted = units.convert(value, code, base, substance)
        assert converted is not None  # every pair below is a safe conversion (tested)
        return converted

    return Unit(code, label, to_base)


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
            _unit("[lb_av]", "lb", "kg"),
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
            _unit("[in_i]", "in", "cm"),
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
            _unit("[degF]", "°F", "Cel"),
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
            _unit("mmol/L", "mmol/L", "mg/dL", "glucose"),
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


# ---- coded entries: searchable lists, free text when nothing fits ------------------------

SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"


@dataclass(frozen=True)
class Concept:
    system: str
    code: str
    display: str  # as the code system says it (sent to EHRs)
    name: str  # as a patient would say it (what the list shows)


def _concepts(system: str, rows: tuple[tuple[str, str, str], ...]) -> tuple[Concept, ...]:
    return tuple(Concept(system, code, display, name) for code, display, name in rows)


# A working subset: codes clinics in the demo data use (so entries fold with theirs) and
# common everyday ones. Anything else is entered as free text.
MEDICATIONS = _concepts(
    RXNORM,
    (
        ("313782", "Acetaminophen 325 MG Oral Tablet", "Acetaminophen (paracetamol) 325 mg tablet"),
        ("243670", "Aspirin 81 MG Oral Tablet", "Aspirin 81 mg tablet"),
        ("310965", "Ibuprofen 200 MG Oral Tablet", "Ibuprofen 200 mg tablet"),
        ("849574", "Naproxen sodium 220 MG Oral Tablet", "Naproxen sodium 220 mg tablet"),
        ("1014676", "cetirizine hydrochloride 5 MG Oral Tablet", "Cetirizine 5 mg tablet"),
        (
            "1049630",
            "diphenhydrAMINE Hydrochloride 25 MG Oral Tablet",
            "Diphenhydramine 25 mg tablet",
        ),
        ("316049", "Hydrochlorothiazide 25 MG", "Hydrochlorothiazide 25 mg"),
        (
            "860975",
            "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet",
            "Metformin 500 mg extended-release tablet",
        ),
        ("312961", "Simvastatin 20 MG Oral Tablet", "Simvastatin 20 mg tablet"),
        ("316672", "Simvistatin 10 MG", "Simvastatin 10 mg"),
        ("309362", "Clopidogrel 75 MG Oral Tablet", "Clopidogrel 75 mg tablet"),
        ("855332", "Warfarin Sodium 5 MG Oral Tablet", "Warfarin 5 mg tablet"),
        ("197604", "Digoxin 0.125 MG Oral Tablet", "Digoxin 0.125 mg tablet"),
        ("897718", "Verapamil Hydrochloride 40 MG", "Verapamil 40 mg"),
        (
            "866414",
            "24 HR metoprolol succinate 100 MG Extended Release Oral Tablet [Toprol]",
            "Metoprolol succinate 100 mg extended-release tablet (Toprol)",
        ),
        ("315971", "Lasix 40mg", "Furosemide (Lasix) 40 mg"),
        ("197319", "Allopurinol 100 MG Oral Tablet", "Allopurinol 100 mg tablet"),
        ("858069", "Colchicine 0.6 MG [Colcrys]", "Colchicine 0.6 mg (Colcrys)"),
        (
            "745679",
            "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
            "Albuterol (salbutamol) inhaler",
        ),
        (
            "895994",
            "120 ACTUAT Fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler",
            "Fluticasone inhaler",
        ),
        (
            "1870230",
            "NDA020800 0.3 ML Epinephrine 1 MG/ML Auto-Injector",
            "Epinephrine auto-injector",
        ),
        ("308182", "Amoxicillin 250 MG Oral Capsule", "Amoxicillin 250 mg capsule"),
        (
            "562251",
            "Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet",
            "Amoxicillin and clavulanate 250/125 mg tablet",
        ),
        (
            "705129",
            "Nitroglycerin 0.4 MG/ACTUAT Mucosal Spray",
            "Nitroglycerin spray",
        ),
        ("998582", "Donepezil hydrochloride 23 MG [Aricept]", "Donepezil 23 mg (Aricept)"),
    ),
)
CONDITIONS = _concepts(
    SNOMED,
    (
        ("38341003", "Hypertension", "High blood pressure (hypertension)"),
        ("44054006", "Diabetes", "Diabetes"),
        ("15777000", "Prediabetes", "Prediabetes"),
        ("55822004", "Hyperlipidemia", "High cholesterol (hyperlipidemia)"),
        ("233678006", "Childhood asthma", "Childhood asthma"),
        ("446096008", "Perennial allergic rhinitis", "Hay fever all year (allergic rhinitis)"),
        ("24079001", "Atopic dermatitis", "Eczema (atopic dermatitis)"),
        ("90560007", "Gout", "Gout"),
        ("239873007", "Osteoarthritis of knee", "Osteoarthritis of the knee"),
        ("64859006", "Osteoporosis (disorder)", "Osteoporosis"),
        ("82423001", "Chronic pain", "Chronic pain"),
        (
            "124171000119105",
            "Chronic intractable migraine without aura",
            "Chronic migraine",
        ),
        ("84757009", "Epilepsy", "Epilepsy"),
        ("49436004", "Atrial Fibrillation", "Atrial fibrillation"),
        ("53741008", "Coronary Heart Disease", "Coronary heart disease"),
        ("88805009", "Chronic congestive heart failure (disorder)", "Heart failure"),
        ("271737000", "Anemia (disorder)", "Anemia"),
        ("40055000", "Chronic sinusitis (disorder)", "Chronic sinusitis"),
        ("431855005", "Chronic kidney disease stage 1 (disorder)", "Chronic kidney disease"),
        ("26929004", "Alzheimer's disease (disorder)", "Alzheimer's disease"),
        ("192127007", "Child attention deficit disorder", "Attention deficit disorder"),
        ("162864005", "Body mass index 30+ - obesity (finding)", "Obesity"),
    ),
)
ALLERGENS = _concepts(
    SNOMED,
    (
        ("91936005", "Allergy to penicillin", "Penicillin"),
        ("91935009", "Allergy to peanuts", "Peanuts"),
        ("91934008", "Allergy to nut", "Tree nuts"),
        ("91930004", "Allergy to eggs", "Eggs"),
        ("425525006", "Allergy to dairy product", "Milk and dairy"),
        ("420174000", "Allergy to wheat", "Wheat"),
        ("300913006", "Shellfish allergy", "Shellfish"),
        ("417532002", "Allergy to fish", "Fish"),
        ("424213003", "Allergy to bee venom", "Bee stings"),
        ("300916003", "Latex allergy", "Latex"),
        ("419474003", "Allergy to mould", "Mould"),
        ("419263009", "Allergy to tree pollen", "Tree pollen"),
        ("418689008", "Allergy to grass pollen", "Grass pollen"),
        ("232350006", "House dust mite allergy", "House dust mites"),
        ("232347008", "Dander (animal) allergy", "Animal dander"),
        ("293586001", "Allergy to aspirin", "Aspirin"),
        ("91939003", "Allergy to sulfonamides", "Sulfa drugs (sulfonamides)"),
    ),
)
VACCINES = _concepts(
    CVX,
    (
        ("140", "Influenza, seasonal, injectable, preservative free", "Flu shot"),
        ("115", "Tdap", "Tdap (tetanus, diphtheria, whooping cough)"),
        ("113", "Td (adult) preservative free", "Td (tetanus, diphtheria) booster"),
        ("133", "Pneumococcal conjugate PCV 13", "Pneumococcal (PCV13)"),
        ("33", "pneumococcal polysaccharide vaccine, 23 valent", "Pneumococcal (PPSV23)"),
        ("121", "zoster", "Shingles (zoster)"),
        ("03", "MMR", "MMR (measles, mumps, rubella)"),
        ("21", "varicella", "Chickenpox (varicella)"),
        ("43", "Hep B, adult", "Hepatitis B (adult)"),
        ("52", "Hep A, adult", "Hepatitis A (adult)"),
        ("62", "HPV, quadrivalent", "HPV"),
        ("114", "meningococcal MCV4P", "Meningococcal (MCV4)"),
    ),
)
SYMPTOMS = _concepts(
    SNOMED,
    (
        ("25064002", "Headache", "Headache"),
        ("386661006", "Fever", "Fever"),
        ("49727002", "Cough", "Cough"),
        ("84229001", "Fatigue", "Tiredness (fatigue)"),
        ("422587007", "Nausea", "Nausea"),
        ("422400008", "Vomiting", "Vomiting"),
        ("62315008", "Diarrhea", "Diarrhea"),
        ("404640003", "Dizziness", "Dizziness"),
        ("267036007", "Dyspnea", "Shortness of breath"),
        ("29857009", "Chest pain", "Chest pain"),
        ("80313002", "Palpitations", "Palpitations"),
        ("162397003", "Pain in throat", "Sore throat"),
        ("161891005", "Backache", "Back pain"),
        ("57676002", "Joint pain", "Joint pain"),
        ("21522001", "Abdominal pain", "Stomach pain"),
        ("271807003", "Eruption of skin", "Rash"),
        ("193462001", "Insomnia", "Trouble sleeping"),
        ("48694002", "Anxiety", "Anxiety"),
    ),
)


def find_concept(concepts: tuple[Concept, ...], text: str) -> Concept | None:
    """The listed concept a typed name stands for (its list name or code display), if any."""
    wanted = " ".join(text.split()).casefold()
    return next((c for c in concepts if wanted in (c.name.casefold(), c.display.casefold())), None)
