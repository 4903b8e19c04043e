"""Form errors in the portal's words: never the form library's defaults, on every form; the
blood-pressure form says everything that needs changing at once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import wtforms
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    HiddenField,
    RadioField,
    SelectField,
)

from portal.phr.entries.catalog import MEASURES
from portal.web import accounts, entry_forms, session_pages  # noqa: F401  (their forms)
from portal.web.form_words import WORDS
from portal.web.forms import PortalForm

CATALOG = Path(wtforms.__file__).parent / "locale" / "wtforms.pot"


def library_messages() -> list[str]:
    """Every message wtforms may say by itself (singular and plural), from its catalog."""
    found = re.findall(r'^msgid(?:_plural)? "(.+)"$', CATALOG.read_text(), re.MULTILINE)
    assert len(found) > 40
    return found


def as_pattern(message: str) -> re.Pattern[str]:
    """A library message with its %(name)d / %s holes matching anything."""
    parts = re.split(r"%\(\w+\)[sd]|%s", message)
    return re.compile(".*".join(re.escape(p) for p in parts))


LIBRARY = [as_pattern(m) for m in library_messages()]


def test_every_library_message_has_the_portals_words() -> None:
    singular = re.findall(r'^msgid "(.+)"$', CATALOG.read_text(), re.MULTILINE)
    missing = [m for m in singular if m not in WORDS]
    assert not missing
    for one, many in WORDS.values():
        for words in (one, many):
            assert not any(p.fullmatch(words) for p in LIBRARY), words


def portal_forms() -> list[type[PortalForm]]:
    found: list[type[PortalForm]] = []
    todo = list(PortalForm.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.startswith("portal."):
            found.append(cls)
    return sorted(set(found), key=lambda c: c.__qualname__)


FORMS = portal_forms()


def bad_values(form: PortalForm, case: str) -> MultiDict[str, str]:
    """Form data that each field refuses: far too long, not a choice, not a date, or nothing."""
    data: MultiDict[str, str] = MultiDict()
    for field in form:
        if isinstance(field, HiddenField | BooleanField) or field.name == "csrf_token":
            continue
        if case == "empty":
            continue
        if isinstance(field, SelectField | RadioField):
            data[field.name] = "not-one-of-them"
        elif isinstance(field, DateField | DateTimeLocalField):
            data[field.name] = "soon"
        else:
            data[field.name] = "x" * 20000
    return data


def test_the_forms_are_all_found() -> None:
    names = {c.__name__ for c in FORMS}
    assert {"SignUpForm", "SignInForm", "ResetRequestForm", "ResetForm"} <= names
    assert {"PasswordChangeForm", "UnlockForm", "FirstPasswordForm"} <= names
    assert {"MeasurementForm", "MedicationForm", "NoteForm", "SymptomForm"} <= names


@pytest.mark.parametrize("case", ["bad", "empty"])
@pytest.mark.parametrize("form_class", FORMS, ids=lambda c: c.__name__)
def test_no_form_says_the_librarys_words(
    app: Flask, form_class: type[PortalForm], case: str
) -> None:
    args = (MEASURES[0],) if form_class is entry_forms.MeasurementForm else ()
    with app.test_request_context("/", method="POST"):
        blank = form_class(*args, formdata=None)
        form = form_class(*args, formdata=bad_values(blank, case))
        checked = getattr(form, "checked", None)
        if checked is not None:
            checked()
        else:
            form.validate()
        errors = [e for field in form for e in field.errors]
    # The browser's time zone is never an error: an unknown one is ignored (portal.web.shown).
    fields = [f for f in blank if f.name not in ("csrf_token", "zone")]
    if fields and (case == "bad" or any(f.flags.required for f in fields)):
        assert errors, form_class.__name__
    for error in errors:
        assert not any(p.fullmatch(str(error)) for p in LIBRARY), (form_class.__name__, error)


# ---- what patients are told --------------------------------------------------------------


def field_errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'<p class="field-error" id="(\w+)-error">([^<]*)</p>', html))


def test_blood_pressure_errors_all_at_once(client: FlaskClient, me: int) -> None:
    page = client.post(
        "/entries/new/blood-pressure", data={"value": "abc", "second": "", "unit": "mm[Hg]"}
    )
    assert page.status_code == 200
    assert field_errors(page.text) == {
        "value": "Enter a number, like 72 or 72.5.",
        "second": "Enter the bottom number.",
        "when": "Enter the date and time.",
    }
    # The numbers are checked against each other even while another field is wrong.
    page = client.post(
        "/entries/new/blood-pressure", data={"value": "120", "second": "130", "unit": "mm[Hg]"}
    )
    assert field_errors(page.text) == {
        "second": "The bottom number must be lower than the top.",
        "when": "Enter the date and time.",
    }
    same = {"value": "120", "second": "120", "unit": "mm[Hg]", "when": "2026-03-04T08:30"}
    page = client.post("/entries/new/blood-pressure", data=same)
    assert field_errors(page.text) == {"second": "The bottom number must be lower than the top."}
    # Out of range, and a unit that is not one: both said, the range in no unit at all.
    odd = {"value": "900", "second": "x", "unit": "furlongs", "when": "2026-03-04T08:30"}
    page = client.post("/entries/new/blood-pressure", data=odd)
    errors = field_errors(page.text)
    assert errors["second"] == "Enter a number, like 72 or 72.5."
    assert errors["unit"] == "Choose one of the options given."


def test_length_errors_in_the_portals_words(client: FlaskClient, me: int) -> None:
    page = client.post(
        "/entries/new/note", data={"title": "t" * 121, "text": "Felt fine after the walk."}
    )
    assert field_errors(page.text) == {
        "title": "That is too long: use at most 120 characters (this has 121)."
    }
    page = client.post("/entries/new/weight", data={"value": "7" * 21, "unit": "kg"})
    assert field_errors(page.text)["value"] == "Enter a number, like 72 or 72.5."


def test_account_forms_in_the_portals_words(app: Flask) -> None:
    visitor = app.test_client()
    page = visitor.post(
        "/signup",
        data={"display_name": "n" * 201, "email": "not-an-address", "password": "short"},
    )
    assert field_errors(page.text) == {
        "display_name": "That is too long: use at most 200 characters (this has 201).",
        "email": "Enter an email address, like name@example.org.",
        "password": "That is too short: use at least 10 characters.",
        "confirm": "Type the password again.",
    }
    page = visitor.post("/signin", data={})
    assert field_errors(page.text) == {
        "email": "Enter your email address.",
        "password": "Enter your password.",
    }
    page = visitor.post("/reset", data={"email": "a" * 321})
    assert "An email address is at most 320 characters long." in field_errors(page.text)["email"]
