"""About this test: one line in plain words of what a common test or vital sign measures.

Written for this project in the manner of MedlinePlus Connect (a short, plain answer to
"what is this test?"); the wording is our own, not copied. Keyed by LOINC code, and by the
kind of vital sign (portal.phr.vitals).
"""

from __future__ import annotations

_GLUCOSE = "The amount of sugar (glucose) in your blood, your body's main source of energy."
_UREA = "A waste product made when the body breaks down protein; the kidneys clear it."
_CREATININE = (
    "A waste product of your muscles, cleared by the kidneys: it shows how well they filter."
)
_CALCIUM = "A mineral your bones, muscles, nerves and heart need to work."
_SODIUM = "A salt that keeps the right amount of water in and around your cells."
_POTASSIUM = (
    "A mineral your nerves, muscles and heartbeat need; "
    "too much or too little can affect the heart."
)
_CHLORIDE = "A salt that works with sodium to balance the fluids and acids in your body."
_CO2 = "Bicarbonate in your blood, which keeps its balance of acid and base."
_EGFR = "An estimate of how much blood your kidneys filter each minute, worked out from creatinine."
_CHOLESTEROL = "All the cholesterol in your blood, a fat that can build up in blood vessels."
_LDL = "The \u201cbad\u201d cholesterol: the kind that builds up in the walls of blood vessels."
_HDL = "The \u201cgood\u201d cholesterol: the kind that carries cholesterol away to the liver."
_TRIGLYCERIDES = "A kind of fat in the blood that comes from food and stores energy."
_HBA1C = "Your average blood sugar over the past 2 to 3 months."
_WBC = "How many white blood cells you have: the cells that fight infection."
_RBC = "How many red blood cells you have: the cells that carry oxygen."
_HEMOGLOBIN = "The protein in red blood cells that carries oxygen; low levels mean anaemia."
_HEMATOCRIT = "How much of your blood is made of red blood cells."
_PLATELETS = "How many platelets you have: the cell pieces that help blood clot."
_TSH = "A hormone from the pituitary gland that tells the thyroid how hard to work."
_URINE_SG = "How concentrated your urine is, which shows how much water your body is keeping."
_URINE_PH = "How acid or alkaline your urine is."
_URINE_GLUCOSE = "Whether there is sugar in your urine; usually there is none."
_URINE_BILIRUBIN = (
    "Whether there is bilirubin (from the liver) in your urine; usually there is none."
)
_URINE_KETONES = "Whether there are ketones in your urine, made when the body burns fat for energy."
_URINE_PROTEIN = "Whether there is protein in your urine, which can be a sign of kidney trouble."

ABOUT: dict[str, str] = {
    "2339-0": _GLUCOSE,
    "2345-7": _GLUCOSE,
    "1558-6": "The amount of sugar (glucose) in your blood after not eating for at least 8 hours.",
    "6299-2": _UREA,
    "3094-0": _UREA,
    "38483-4": _CREATININE,
    "2160-0": _CREATININE,
    "49765-1": _CALCIUM,
    "17861-6": _CALCIUM,
    "2947-0": _SODIUM,
    "2951-2": _SODIUM,
    "6298-4": _POTASSIUM,
    "2823-3": _POTASSIUM,
    "2069-3": _CHLORIDE,
    "2075-0": _CHLORIDE,
    "20565-8": _CO2,
    "2028-9": _CO2,
    "33914-3": _EGFR,
    "62238-1": _EGFR,
    "98979-8": _EGFR,
    "48642-3": _EGFR,
    "48643-1": _EGFR,
    "2885-2": "All the protein in your blood, made mostly by the liver and the immune system.",
    "1751-7": "The main protein made by your liver; it keeps fluid inside blood vessels.",
    "10834-0": "Proteins in your blood other than albumin, many of them antibodies.",
    "1975-2": "A yellow substance made when old red blood cells break down; the liver clears it.",
    "1968-7": "The part of bilirubin the liver has already processed.",
    "6768-6": "An enzyme from the liver and bones; high levels can point to either.",
    "1742-6": (
        "An enzyme found mostly in the liver; it leaks into the blood when the liver is hurt."
    ),
    "1920-8": (
        "An enzyme in the liver, heart and muscles; high levels can mean one of them is hurt."
    ),
    "2324-2": "A liver enzyme that rises with liver or bile duct trouble, and with alcohol.",
    "14804-9": "An enzyme in most of the body's tissues, released when cells are damaged.",
    "19123-9": "A mineral your muscles, nerves and heart need.",
    "2777-1": "A mineral that works with calcium to build bones and teeth.",
    "3084-1": "A waste product from the breakdown of food and cells; too much can cause gout.",
    "2093-3": _CHOLESTEROL,
    "2571-8": _TRIGLYCERIDES,
    "18262-6": _LDL,
    "13457-7": _LDL,
    "2089-1": _LDL,
    "2085-9": _HDL,
    "4548-4": _HBA1C,
    "17856-6": _HBA1C,
    "14959-1": (
        "Whether your kidneys let a protein (albumin) "
        "leak into your urine, an early sign of damage."
    ),
    "6690-2": _WBC,
    "789-8": _RBC,
    "718-7": _HEMOGLOBIN,
    "4544-3": _HEMATOCRIT,
    "20570-8": _HEMATOCRIT,
    "787-2": "The average size of your red blood cells.",
    "785-6": "The average amount of hemoglobin in each red blood cell.",
    "786-4": "How concentrated the hemoglobin is inside your red blood cells.",
    "21000-5": "How much your red blood cells differ in size.",
    "788-0": "How much your red blood cells differ in size.",
    "777-3": _PLATELETS,
    "32207-3": "How much your platelets differ in size.",
    "32623-1": "The average size of your platelets; young platelets are larger.",
    "770-8": (
        "The share of your white blood cells that are neutrophils, the first to fight bacteria."
    ),
    "736-9": (
        "The share of your white blood cells that are lymphocytes, "
        "which fight viruses and make antibodies."
    ),
    "5905-5": (
        "The share of your white blood cells that are monocytes, which clear germs and dead cells."
    ),
    "713-8": (
        "The share of your white blood cells that are eosinophils, "
        "involved in allergies and parasites."
    ),
    "706-2": (
        "The share of your white blood cells that are basophils, involved in allergic reactions."
    ),
    "3016-3": _TSH,
    "11579-0": _TSH,
    "3024-7": "The thyroid hormone that is free in your blood to act on the body.",
    "2498-4": "The amount of iron in your blood, which you need to make red blood cells.",
    "2276-4": "A protein that stores iron: it shows how much iron your body has in reserve.",
    "2132-9": "A vitamin you need for nerves and to make red blood cells.",
    "2284-8": "A B vitamin (folic acid) you need to make new cells, including red blood cells.",
    "1989-3": "The main form of vitamin D in your blood; you need it for strong bones.",
    "1988-5": "A protein the liver makes when there is inflammation somewhere in the body.",
    "4537-7": "How fast red blood cells settle in a tube; faster can mean inflammation.",
    "5902-2": "How long your blood takes to clot.",
    "6301-6": (
        "How long your blood takes to clot, on a scale shared "
        "by every lab; used to check blood thinners."
    ),
    "3173-2": "How long your blood takes to clot, by another pathway than the PT test.",
    "30934-4": (
        "A hormone the heart releases when it is under strain; used to check for heart failure."
    ),
    "33762-6": (
        "A hormone the heart releases when it is under strain; used to check for heart failure."
    ),
    "2857-1": (
        "A protein made by the prostate; higher levels can have many causes, cancer among them."
    ),
    "57905-2": "Whether there is hidden blood in your stool, a screening test for bowel cancer.",
    "5811-5": _URINE_SG,
    "2965-2": _URINE_SG,
    "5803-2": _URINE_PH,
    "2756-5": _URINE_PH,
    "5792-7": _URINE_GLUCOSE,
    "25428-4": _URINE_GLUCOSE,
    "20505-4": _URINE_BILIRUBIN,
    "5770-3": _URINE_BILIRUBIN,
    "5797-6": _URINE_KETONES,
    "2514-8": _URINE_KETONES,
    "5804-0": _URINE_PROTEIN,
    "20454-5": _URINE_PROTEIN,
    "5802-4": "Whether there is nitrite in your urine, made by some bacteria: a sign of infection.",
    "5794-3": "Whether there is blood in your urine, even too little to see.",
    "5799-2": (
        "Whether there are white blood cells in your urine, a sign of infection or inflammation."
    ),
    "5778-6": (
        "The colour of your urine, which changes with how much you drink, foods and medicines."
    ),
    "32167-9": "Whether your urine is clear or cloudy.",
    "5767-9": "How your urine smells.",
    "10230-1": "How much blood the heart's main pumping chamber pushes out with each beat.",
}

# Vital signs, by the kind's key in portal.phr.vitals.
ABOUT_VITALS: dict[str, str] = {
    "blood-pressure": (
        "How hard your blood pushes on the walls of your arteries: the top number while the "
        "heart beats, the bottom number between beats."
    ),
    "weight": "How heavy you are.",
    "height": "How tall you are.",
    "bmi": (
        "Your weight compared with your height, a rough guide to whether your weight is healthy."
    ),
    "heart-rate": "How many times your heart beats in a minute (your pulse).",
    "temperature": "How warm your body is; a high temperature (fever) often means an infection.",
    "breathing": "How many breaths you take in a minute.",
    "oxygen": "How much of the blood's hemoglobin is carrying oxygen (measured on a finger).",
    "head": "The distance around a baby's or child's head, a sign of how the brain is growing.",
    "glucose": "The amount of sugar in your blood, measured with a finger-prick meter.",
    "pain": "How much pain you said you had, from 0 (none) to 10 (the worst imaginable).",
    "steps": "How many steps you walked in a day.",
}


def about(code: str | None) -> str | None:
    """What a test (by LOINC code) measures, in one plain line; None when we have none."""
    return ABOUT.get(code or "")


def about_vital(kind: str) -> str | None:
    """What a kind of vital sign measures, in one plain line."""
    return ABOUT_VITALS.get(kind)
