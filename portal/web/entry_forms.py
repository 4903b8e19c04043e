"""Forms for the patient's coded entries: medicines, conditions, allergies, vaccines, symptoms
and journal notes. Names come from a searchable list (a datalist) or as free text; every
field refuses markup and sizes beyond reason; what was typed stays on an error."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from wtforms import (
    DateField,
    DateTimeLocalField,
    Field,
    HiddenField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Optional, ValidationError

from portal.db import utcnow
from portal.phr.entries import shapes
from portal.phr.entries.catalog import (
    ALLERGENS,
    CONDITIONS,
    MEDICATIONS,
    SYMPTOMS,
    VACCINES,
    Concept,
    Measure,
    Unit,
    find_concept,
)
from portal.phr.entries.service import Builder, MeasurementInput
from portal.phr.words import concept_text, number
from portal.web.forms import PortalForm, at_most

MARKUP = re.compile(r"<\s*[A-Za-z/!?]")
EARLIEST = date(1900, 1, 1)
FUTURE_SLACK = timedelta(minutes=10)  # a clock a little ahead of ours is not the future
NAME_REQUIRED = "Enter a name, or pick one from the list."
SAY_NOW = "Say whether you have it now or it is over."


def _builder(make: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> Builder:
    """A Builder calling `make` with the form's values and the entry's ids, patient and time."""

    def build(patient: dict[str, str], rid: str, ident: str) -> dict[str, Any]:
        recorded = utcnow()
        return make(
            *args, resource_id=rid, identifier=ident, patient=patient, recorded=recorded, **kwargs
        )

    return build


def options(pairs: list[tuple[str, str]]) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in pairs]


def no_markup(_form: PortalForm, field: Field) -> None:
    if field.data and MARKUP.search(str(field.data)):
        raise ValidationError("Plain text only: remove anything like <script> or <b>.")


def past_date(_form: PortalForm, field: Field) -> None:
    if field.data is None:
        return
    if field.data > utcnow().date() + timedelta(days=1):
        raise ValidationError("That date is in the future.")
    if field.data < EARLIEST:
        raise ValidationError("Enter a date after 1900.")


def name_field(label: str) -> StringField:
    return StringField(label, validators=[DataRequired(NAME_REQUIRED), at_most(200), no_markup])


def note_field() -> TextAreaField:
    return TextAreaField("Note (optional)", validators=[Optional(), at_most(1000), no_markup])


def when_field() -> DateTimeLocalField:
    return DateTimeLocalField(
        "When", format="%Y-%m-%dT%H:%M", validators=[InputRequired("Enter the date and time.")]
    )


class LocalMoment:
    """For forms with `when` (a datetime-local input) and `tz` (the browser's offset, from
    static/entries.js): the moment in the patient's own time zone, checked for sense."""

    when: DateTimeLocalField
    tz: HiddenField

    def validate_when(self, field: DateTimeLocalField) -> None:
        if field.data is None:
            return
        when = self.moment()
        if when > utcnow() + FUTURE_SLACK:
            raise ValidationError("That time is in the future.")
        if when.date() < EARLIEST:
            raise ValidationError("Enter a date after 1900.")

    def moment(self) -> datetime:
        """`when` in the browser's zone (UTC when it did not say or said nonsense)."""
        try:
            minutes = int(self.tz.data or 0)
        except ValueError:
            minutes = 0
        zone = timezone(-timedelta(minutes=minutes if -900 <= minutes <= 900 else 0))
        assert self.when.data is not None
        return self.when.data.replace(tzinfo=zone, second=0, microsecond=0)

    def fill_moment(self, value: Any) -> None:
        """A saved moment (with its offset) back into `when` and `tz`, as it was typed."""
        if not isinstance(value, str) or "T" not in value:
            return
        parsed = datetime.fromisoformat(value)
        self.when.data = parsed.replace(tzinfo=None)
        offset = parsed.utcoffset()
        self.tz.data = str(-int(offset.total_seconds() // 60)) if offset else "0"


def _text(field: Field) -> str | None:
    value = " ".join(str(field.data or "").split())
    return value or None


class CodedForm(PortalForm):
    """A form whose `name` is picked from `concepts` or typed freely."""

    concepts: tuple[Concept, ...] = ()
    name: StringField

    def what(self) -> dict[str, Any]:
        text = _text(self.name) or ""
        found = find_concept(self.concepts, text)
        return shapes.concept(found, found.name if found else text)

    def builder(self) -> Builder | None:  # pragma: no cover - every kind defines it
        raise NotImplementedError

    def fill(self, raw: dict[str, Any]) -> None:  # pragma: no cover - every kind defines it
        raise NotImplementedError


def _note_of(raw: dict[str, Any]) -> str:
    notes = raw.get("note") or []
    return str(notes[0].get("text", "")) if notes else ""


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


FREQUENCIES = [
    ("", "Choose (optional)"),
    ("once a day", "Once a day"),
    ("twice a day", "Twice a day"),
    ("three times a day", "Three times a day"),
    ("four times a day", "Four times a day"),
    ("every morning", "Every morning"),
    ("at bedtime", "At bedtime"),
    ("when needed", "When needed"),
    ("once a week", "Once a week"),
]


class MedicationForm(CodedForm):
    concepts = MEDICATIONS
    name = name_field("Medicine")
    dose = StringField("Dose (optional)", validators=[Optional(), at_most(100), no_markup])
    frequency = SelectField("How often", choices=options(FREQUENCIES), validators=[Optional()])
    taking = RadioField(
        "Do you take it now?",
        choices=options([("yes", "Yes, I take it"), ("no", "No, I stopped")]),
        default="yes",
        validators=[InputRequired("Say whether you take it now.")],
    )
    started = DateField("Started (optional)", validators=[Optional(), past_date])
    note = note_field()

    def builder(self) -> Builder:
        what, note = self.what(), _text(self.note)
        dose, frequency = _text(self.dose), self.frequency.data or None
        taking, started = self.taking.data == "yes", self.started.data

        return _builder(
            shapes.medication,
            what,
            taking=taking,
            dose=dose,
            frequency=frequency,
            started=started,
            note=note,
        )

    def fill(self, raw: dict[str, Any]) -> None:
        self.name.data = concept_text(raw.get("medicationCodeableConcept")) or ""
        dosage = (raw.get("dosageInstruction") or [{}])[0]
        frequency = ((dosage.get("timing") or {}).get("code") or {}).get("text")
        self.frequency.data = frequency or ""
        text = str(dosage.get("text") or "")
        self.dose.data = (
            text[: -len(frequency)].strip() if frequency and text.endswith(frequency) else text
        )
        self.taking.data = "yes" if raw.get("status") == "active" else "no"
        authored = raw.get("authoredOn")
        self.started.data = (
            _date(authored) if isinstance(authored, str) and len(authored) == 10 else None
        )
        self.note.data = _note_of(raw)


STATUS_CHOICES = [("active", "I have it now"), ("resolved", "It is over")]


class ConditionForm(CodedForm):
    concepts = CONDITIONS
    name = name_field("Condition")
    status = RadioField(
        "Now",
        choices=options(STATUS_CHOICES),
        default="active",
        validators=[InputRequired(SAY_NOW)],
    )
    since = DateField("Since (optional)", validators=[Optional(), past_date])
    ended = DateField("Ended (optional)", validators=[Optional(), past_date])
    note = note_field()

    def validate_ended(self, field: DateField) -> None:
        if field.data and self.since.data and field.data < self.since.data:
            raise ValidationError("It cannot end before it started.")

    def builder(self) -> Builder:
        what, note = self.what(), _text(self.note)
        active, since, ended = self.status.data == "active", self.since.data, self.ended.data

        return _builder(
            shapes.condition,
            what,
            category="problem-list-item",
            active=active,
            onset=since,
            ended=ended,
            severity=None,
            note=note,
        )

    def fill(self, raw: dict[str, Any]) -> None:
        self.name.data = concept_text(raw.get("code")) or ""
        codes = [c.get("code") for c in (raw.get("clinicalStatus") or {}).get("coding", [])]
        self.status.data = "active" if "active" in codes else "resolved"
        self.since.data = _date(raw.get("onsetDateTime"))
        self.ended.data = _date(raw.get("abatementDateTime"))
        self.note.data = _note_of(raw)


SEVERITIES = [
    ("", "Choose (optional)"),
    ("mild", "Mild"),
    ("moderate", "Moderate"),
    ("severe", "Severe"),
]


class AllergyForm(CodedForm):
    concepts = ALLERGENS
    name = name_field("Allergic or intolerant to")
    kind = RadioField(
        "Kind",
        choices=options([("allergy", "Allergy"), ("intolerance", "Intolerance (not an allergy)")]),
        default="allergy",
        validators=[InputRequired("Say whether it is an allergy or an intolerance.")],
    )
    category = SelectField(
        "What sort (optional)",
        choices=options(
            [
                ("", "Choose (optional)"),
                ("food", "Food"),
                ("medication", "Medicine"),
                ("environment", "Something around me (pollen, animals, dust)"),
                ("biologic", "Biologic (vaccine, blood product)"),
            ]
        ),
        validators=[Optional()],
    )
    reaction = StringField(
        "What happens (optional)", validators=[Optional(), at_most(200), no_markup]
    )
    severity = SelectField(
        "How bad (optional)", choices=options(SEVERITIES), validators=[Optional()]
    )
    status = RadioField(
        "Now",
        choices=options(STATUS_CHOICES),
        default="active",
        validators=[InputRequired(SAY_NOW)],
    )
    since = DateField("Since (optional)", validators=[Optional(), past_date])
    note = note_field()

    def builder(self) -> Builder:
        what, note = self.what(), _text(self.note)
        kind, category = self.kind.data or "allergy", self.category.data or None
        reaction, severity = _text(self.reaction), self.severity.data or None
        active, since = self.status.data == "active", self.since.data

        return _builder(
            shapes.allergy,
            what,
            kind=kind,
            category=category,
            active=active,
            reaction=reaction,
            severity=severity,
            onset=since,
            note=note,
        )

    def fill(self, raw: dict[str, Any]) -> None:
        self.name.data = concept_text(raw.get("code")) or ""
        self.kind.data = raw.get("type") or "allergy"
        self.category.data = (raw.get("category") or [""])[0]
        reactions = raw.get("reaction") or [{}]
        self.reaction.data = concept_text((reactions[0].get("manifestation") or [None])[0]) or ""
        self.severity.data = reactions[0].get("severity") or ""
        codes = [c.get("code") for c in (raw.get("clinicalStatus") or {}).get("coding", [])]
        self.status.data = "active" if "active" in codes else "resolved"
        self.since.data = _date(raw.get("onsetDateTime"))
        self.note.data = _note_of(raw)


class ImmunizationForm(CodedForm):
    concepts = VACCINES
    name = name_field("Vaccine")
    given = DateField(
        "Date given", validators=[InputRequired("Enter the date you had it."), past_date]
    )
    place = StringField("Where (optional)", validators=[Optional(), at_most(200), no_markup])
    note = note_field()

    def builder(self) -> Builder:
        what, note, place = self.what(), _text(self.note), _text(self.place)
        given = self.given.data
        assert given is not None

        return _builder(
            shapes.immunization,
            what,
            given=given,
            place=place,
            note=note,
        )

    def fill(self, raw: dict[str, Any]) -> None:
        self.name.data = concept_text(raw.get("vaccineCode")) or ""
        self.given.data = _date(raw.get("occurrenceDateTime"))
        note = _note_of(raw)
        if note.startswith("Given at "):
            place, _, rest = note[len("Given at ") :].partition(" — ")
            self.place.data, note = place, rest
        self.note.data = note


class SymptomForm(LocalMoment, CodedForm):
    concepts = SYMPTOMS
    name = name_field("Symptom")
    when = when_field()
    tz = HiddenField(default="0")
    severity = SelectField(
        "How bad",
        choices=options(SEVERITIES[1:]),
        default="mild",
        validators=[InputRequired("Say how bad it is.")],
    )
    note = note_field()

    def builder(self) -> Builder:
        what, note, when, severity = (
            self.what(),
            _text(self.note),
            self.moment(),
            self.severity.data,
        )

        return _builder(
            shapes.condition,
            what,
            category="health-concern",
            active=True,
            onset=when,
            ended=None,
            severity=severity,
            note=note,
        )

    def fill(self, raw: dict[str, Any]) -> None:
        self.name.data = concept_text(raw.get("code")) or ""
        self.fill_moment(raw.get("onsetDateTime"))
        codes = [c.get("code") for c in (raw.get("severity") or {}).get("coding", [])]
        self.severity.data = next(
            (k for k, (code, _d) in shapes.SEVERITY.items() if code in codes), "mild"
        )
        self.note.data = _note_of(raw)


class NoteForm(PortalForm):
    title = StringField(
        "Title", validators=[DataRequired("Give your note a title."), at_most(120), no_markup]
    )
    text = TextAreaField(
        "Note", validators=[DataRequired("Write something."), at_most(5000), no_markup]
    )

    def builder(self) -> Builder:
        title, text = _text(self.title) or "Note", str(self.text.data or "").strip()

        return _builder(
            shapes.journal_note,
            title,
            text,
        )

    def fill(self, raw: dict[str, Any]) -> None:
        import base64

        self.title.data = raw.get("description") or ""
        attachment = ((raw.get("content") or [{}])[0]).get("attachment") or {}
        try:
            self.text.data = base64.b64decode(attachment.get("data") or "").decode()
        except ValueError:
            self.text.data = ""


# ---- measurements -------------------------------------------------------------------------

NUMBER = re.compile(r"^\s*\d{1,7}([.,]\d{1,3})?\s*$")
NOT_A_NUMBER = "Enter a number, like 72 or 72.5."
BOTTOM_BELOW_TOP = "The bottom number must be lower than the top."


class MeasurementForm(LocalMoment, PortalForm):
    """A vital sign or measurement; values are kept as typed so an error never loses them."""

    value = StringField(validators=[InputRequired("Enter a number."), at_most(20, NOT_A_NUMBER)])
    second = StringField(validators=[at_most(20, NOT_A_NUMBER)])
    unit = SelectField("Unit", validators=[InputRequired("Choose a unit.")])
    when = when_field()
    tz = HiddenField(default="0")
    note = note_field()

    def __init__(self, measure: Measure, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.measure = measure
        self.unit.choices = [SelectChoice(u.code, u.label) for u in measure.units]
        self.value.label.text = measure.components[0][2] if measure.components else measure.name
        if measure.components:
            self.second.label.text = measure.components[1][2]

    def validate_second(self, field: StringField) -> None:
        if self.measure.components and not (field.data or "").strip():
            raise ValidationError("Enter the bottom number.")

    def checked(self) -> MeasurementInput | None:
        """The entry, or None with errors on the fields (nothing is saved then): every
        field's error at once, so one try shows all that needs changing."""
        valid = self.validate()
        fields = [self.value, self.second] if self.measure.components else [self.value]
        # A field its validators passed is read as a number too (in range, in its unit).
        values = [None if f.errors else self._number(f) for f in fields]
        top, bottom = [*values, None][:2]
        if self.measure.components and top is not None and bottom is not None and top <= bottom:
            self.second.errors = [*self.second.errors, BOTTOM_BELOW_TOP]
            return None
        if not valid or any(v is None for v in values):
            return None
        numbers = tuple(v for v in values if v is not None)
        note = (self.note.data or "").strip() or None
        return MeasurementInput(self.measure, numbers, self.unit.data or "", self.moment(), note)

    def _number(self, field: StringField) -> Decimal | None:
        text = (field.data or "").strip()
        measure = self.measure
        unit = measure.unit(self.unit.data or "")
        if not NUMBER.match(text):
            field.errors = [*field.errors, NOT_A_NUMBER]
            return None
        value = Decimal(text.replace(",", "."))  # the pattern admits only decimals
        if measure.integer and value != value.to_integral_value():
            field.errors = [*field.errors, "Enter a whole number."]
            return None
        if unit is None:  # no unit chosen (the unit field says so): the range waits for it
            return value
        if not measure.low <= unit.to_base(float(value)) <= measure.high:
            low, high = _in_unit(measure.low, unit, measure), _in_unit(measure.high, unit, measure)
            field.errors = [
                *field.errors,
                f"That looks like a typing mistake: enter a value between {low} and {high} "
                f"{unit.label}.",
            ]
            return None
        return value

    def fill(self, raw: dict[str, Any]) -> None:
        """An entry's values back into the form, as they were saved."""
        quantities = [c.get("valueQuantity") or {} for c in raw.get("component") or []] or [
            raw.get("valueQuantity") or {}
        ]
        self.value.data = str(quantities[0].get("value", ""))
        if len(quantities) > 1:
            self.second.data = str(quantities[1].get("value", ""))
        self.unit.data = quantities[0].get("code")
        self.fill_moment(raw.get("effectiveDateTime"))
        self.note.data = _note_of(raw)


def _in_unit(value: float, unit: Unit, measure: Measure) -> str:
    """A range end (in the measure's first unit) in the unit the patient chose."""
    if unit.code == measure.units[0].code:
        return number(value)
    one = unit.to_base(1.0) - unit.to_base(0.0)
    zero = unit.to_base(0.0)
    return number(round((value - zero) / one, 1))


@dataclass(frozen=True)
class EntryKind:
    key: str
    title: str  # "a medicine"
    heading: str  # "Medicine you take"
    form: Callable[..., Any]
    resource_type: str
    listed_at: str  # the records page it shows on
    category: str | None = None  # Condition category that tells symptoms from conditions


KINDS: tuple[EntryKind, ...] = (
    EntryKind(
        "medication",
        "a medicine",
        "Medicine",
        MedicationForm,
        "MedicationRequest",
        "records.medications",
    ),
    EntryKind(
        "allergy",
        "an allergy",
        "Allergy or intolerance",
        AllergyForm,
        "AllergyIntolerance",
        "records.allergies",
    ),
    EntryKind(
        "condition",
        "a condition",
        "Health condition",
        ConditionForm,
        "Condition",
        "records.problems",
        "problem-list-item",
    ),
    EntryKind(
        "symptom",
        "a symptom",
        "Symptom",
        SymptomForm,
        "Condition",
        "records.problems",
        "health-concern",
    ),
    EntryKind(
        "immunization",
        "a vaccine",
        "Vaccine received elsewhere",
        ImmunizationForm,
        "Immunization",
        "records.immunizations",
    ),
    EntryKind("note", "a note", "Journal note", NoteForm, "DocumentReference", "records.documents"),
)
KIND_BY_KEY = {k.key: k for k in KINDS}


def kind_of(raw: dict[str, Any]) -> EntryKind | None:
    """Which kind of entry a stored resource is (None: a measurement)."""
    rtype = raw.get("resourceType")
    for kind in KINDS:
        if kind.resource_type != rtype:
            continue
        if kind.category is None:
            return kind
        codes = [
            c.get("code") for cat in raw.get("category") or [] for c in cat.get("coding") or []
        ]
        if kind.category in codes:
            return kind
    return None


__all__ = ["KINDS", "KIND_BY_KEY", "UTC", "EntryKind", "kind_of"]
