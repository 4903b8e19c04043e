"""Entry forms: saving, errors that keep what was typed, history, delete and undo, access."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import Account, EntryRevision, FhirRecord
from tests.phr import factories as f
from tests.sessions import begin

SCRIPT = "<script>alert(1)</script>"
HUGE = "9" * 20000


def sign_in(client: FlaskClient, account_id: int) -> None:
    with client.session_transaction() as s:
        begin(s, account_id)


def stored(app: Flask) -> int:
    with app.app_context():
        return int(db.session.scalar(sa.select(sa.func.count()).select_from(FhirRecord)) or 0)


def bp(**changes: str) -> dict[str, str]:
    form = {"value": "128", "second": "84", "unit": "mm[Hg]", "when": "2026-03-04T08:30"}
    form.update(changes)
    return {k: v for k, v in form.items() if v != "<missing>"}


def test_add_a_blood_pressure_and_see_it_with_the_vitals(
    app: Flask, client: FlaskClient, me: int
) -> None:
    form = client.get("/entries/new/blood-pressure")
    assert form.status_code == 200 and "Top number (systolic)" in form.text
    answer = client.post("/entries/new/blood-pressure", data=bp(tz="-120"))
    assert answer.status_code == 302
    later = bp(value="131", second="79", when="2026-03-05T08:30")
    assert client.post("/entries/new/blood-pressure", data=later).status_code == 302
    assert answer.headers["Location"].endswith("/records/vitals#vital-blood-pressure")
    page = client.get("/records/vitals").text
    assert "Saved your blood pressure reading." in page
    assert "128/84 mmHg" in page and 'class="source source-you"' in page
    assert 'class="point mine"' in page and "Your own readings" in page
    with app.app_context():
        raw = db.session.scalars(
            sa.select(FhirRecord.raw)
            .where(FhirRecord.resource_type == "Observation")
            .order_by(FhirRecord.id)
        ).first()
        assert raw is not None and raw["effectiveDateTime"] == "2026-03-04T08:30:00+02:00"


def test_choose_what_to_add(client: FlaskClient, me: int) -> None:
    page = client.get("/entries/new").text
    for name in ("Blood pressure", "Weight", "Blood glucose", "Oxygen level", "Steps"):
        assert name in page
    assert client.get("/entries/new/cholesterol").status_code == 404


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("value", "<missing>", "Enter a number."),
        ("value", "", "Enter a number."),
        ("value", "abc", "Enter a number, like 72 or 72.5."),
        ("value", "1e3", "Enter a number, like 72 or 72.5."),
        ("value", "-120", "Enter a number, like 72 or 72.5."),
        ("value", "350", "between 40 and 300 mmHg"),
        ("value", "30", "between 40 and 300 mmHg"),
        ("value", "120.5", "Enter a whole number."),
        ("value", HUGE, "Enter a number, like 72 or 72.5."),
        ("value", SCRIPT, "Enter a number, like 72 or 72.5."),
        ("value", "<b>1</b>", "Enter a number, like 72 or 72.5."),
        ("second", "<missing>", "Enter the bottom number."),
        ("second", "x", "Enter a number, like 72 or 72.5."),
        ("second", "20", "between 40 and 300 mmHg"),
        ("second", "130", "The bottom number must be lower than the top."),
        ("second", HUGE, "Enter a number, like 72 or 72.5."),
        ("second", SCRIPT, "Enter a number, like 72 or 72.5."),
        ("unit", "<missing>", "Choose a unit."),
        ("unit", "kg", "Choose one of the options given."),
        ("unit", HUGE, "Choose one of the options given."),
        ("unit", SCRIPT, "Choose one of the options given."),
        ("when", "<missing>", "Enter the date and time."),
        ("when", "yesterday", "Enter a real date and time."),
        ("when", "2999-01-01T10:00", "That time is in the future."),
        ("when", "1850-01-01T10:00", "Enter a date after 1900."),
        ("when", HUGE, "Enter a real date and time."),
        ("when", SCRIPT, "Enter a real date and time."),
        ("note", HUGE, "That is too long: use at most 1000 characters"),
        ("note", SCRIPT, "Plain text only"),
    ],
)
def test_bad_input_is_explained_and_nothing_is_saved(
    app: Flask, client: FlaskClient, me: int, field: str, value: str, message: str
) -> None:
    before = stored(app)
    answer = client.post("/entries/new/blood-pressure", data=bp(**{field: value}))
    assert answer.status_code == 200  # the form again, with the error
    assert message in answer.text
    assert f'id="{field}-error"' in answer.text and 'aria-invalid="true"' in answer.text
    assert stored(app) == before
    assert "<script>alert(1)</script>" not in answer.text  # echoed escaped, never run
    if value not in ("<missing>", HUGE) and field not in ("unit",):
        assert str(escape_for_html(value)) in answer.text  # what was typed is kept


def escape_for_html(value: str) -> Any:
    from markupsafe import escape

    return escape(value)


@pytest.mark.parametrize(
    ("key", "form", "message"),
    [
        ("weight", {"value": "700", "unit": "kg"}, "between 0.5 and 500 kg"),
        ("weight", {"value": "1200", "unit": "[lb_av]"}, "between 1.1 and 1,102 lb"),
        ("temperature", {"value": "120", "unit": "[degF]"}, "between 86 and 113 °F"),
        ("glucose", {"value": "80", "unit": "mmol/L"}, "between 0.6 and 55.5 mmol/L"),
        ("oxygen", {"value": "101", "unit": "%"}, "between 50 and 100 %"),
        ("pain", {"value": "11", "unit": "{score}"}, "between 0 and 10 out of 10"),
        ("steps", {"value": "1500.5", "unit": "/d"}, "Enter a whole number."),
    ],
)
def test_plausible_ranges_in_the_unit_chosen(
    app: Flask, client: FlaskClient, me: int, key: str, form: dict[str, str], message: str
) -> None:
    answer = client.post(f"/entries/new/{key}", data={**form, "when": "2026-03-04T08:30"})
    assert answer.status_code == 200 and message in answer.text
    assert stored(app) == 0


def test_a_weight_in_pounds_is_kept_as_typed(app: Flask, client: FlaskClient, me: int) -> None:
    form = {"value": "154,5", "unit": "[lb_av]", "when": "2026-03-04T08:30", "note": "after run"}
    assert client.post("/entries/new/weight", data=form).status_code == 302
    with app.app_context():
        raw = db.session.scalars(
            sa.select(FhirRecord.raw).where(FhirRecord.resource_type == "Observation")
        ).one()
    assert raw["valueQuantity"]["value"] == 154.5 and raw["valueQuantity"]["code"] == "[lb_av]"
    assert raw["note"] == [{"text": "after run"}]
    assert "70.1 kg" in client.get("/records/vitals").text  # charted with the clinics' kg


def add_weight(client: FlaskClient, value: str = "70") -> int:
    answer = client.post(
        "/entries/new/weight", data={"value": value, "unit": "kg", "when": "2026-03-04T08:30"}
    )
    assert answer.status_code == 302
    page = client.get("/records/vitals").text
    return int(page.split('<a href="/entries/')[1].split('"')[0])


def test_edit_shows_history_and_delete_can_be_undone(
    app: Flask, client: FlaskClient, me: int
) -> None:
    entry_id = add_weight(client)
    form = client.get(f"/entries/{entry_id}/edit").text
    assert 'value="70"' in form and 'value="2026-03-04T08:30"' in form
    changed = client.post(
        f"/entries/{entry_id}/edit",
        data={"value": "71.5", "unit": "kg", "when": "2026-03-04T09:00"},
    )
    assert changed.status_code == 302
    page = client.get(f"/entries/{entry_id}").text
    assert "71.5 kg" in page and "Changed" in page and "Added" in page and "70 kg" in page
    client.post(f"/entries/{entry_id}/delete")
    deleted = client.get(f"/entries/{entry_id}").text
    assert "You deleted this entry" in deleted and "Undo delete" in deleted
    assert "71.5 kg" not in client.get("/records/vitals").text
    client.post(f"/entries/{entry_id}/restore")
    assert "71.5 kg" in client.get("/records/vitals").text
    with app.app_context():
        actions = db.session.scalars(
            sa.select(EntryRevision.action).order_by(EntryRevision.version)
        ).all()
    assert actions == ["created", "edited", "deleted", "restored"]


def test_a_failed_edit_changes_nothing(app: Flask, client: FlaskClient, me: int) -> None:
    entry_id = add_weight(client)
    answer = client.post(
        f"/entries/{entry_id}/edit",
        data={"value": "9000", "unit": "kg", "when": "2026-03-04T09:00"},
    )
    assert answer.status_code == 200 and "between 0.5 and 500 kg" in answer.text
    assert 'value="9000"' in answer.text
    assert "Changed" not in client.get(f"/entries/{entry_id}").text


def test_entries_are_their_owners_alone(app: Flask, client: FlaskClient, me: int) -> None:
    entry_id = add_weight(client)
    stranger = app.test_client()
    with app.app_context():
        other = f.make_account(db.session, "Other")
        db.session.commit()
        other_id = other.id
    sign_in(stranger, other_id)
    for path in (f"/entries/{entry_id}", f"/entries/{entry_id}/edit"):
        assert stranger.get(path).status_code == 404
    for action in ("edit", "delete", "restore"):
        assert stranger.post(f"/entries/{entry_id}/{action}").status_code == 404
    assert "70 kg" in client.get("/records/vitals").text
    anonymous = app.test_client()
    assert anonymous.get("/entries/new").status_code == 302  # to sign in
    assert anonymous.post("/entries/new/weight", data={"value": "70"}).status_code == 302


def test_forms_need_the_csrf_token(app: Flask, me: int) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    sign_in(client, me)
    answer = client.post(
        "/entries/new/weight", data={"value": "70", "unit": "kg", "when": "2026-03-04T08:30"}
    )
    assert answer.status_code == 400
    assert stored(app) == 0


# ---- coded entries ---------------------------------------------------------------------------

GOOD = {
    "medication": {
        "name": "Metformin 500 mg extended-release tablet",
        "dose": "500 mg",
        "frequency": "twice a day",
        "taking": "yes",
        "started": "2024-01-02",
        "note": "with food",
    },
    "allergy": {
        "name": "Peanuts",
        "kind": "allergy",
        "category": "food",
        "reaction": "Hives",
        "severity": "moderate",
        "status": "active",
        "since": "2000-05-01",
    },
    "condition": {
        "name": "Gout",
        "status": "resolved",
        "since": "2010-01-01",
        "ended": "2012-01-01",
    },
    "symptom": {"name": "Headache", "when": "2026-03-04T08:30", "tz": "0", "severity": "severe"},
    "immunization": {"name": "Flu shot", "given": "2025-10-01", "place": "Corner pharmacy"},
    "note": {"title": "Knee", "text": "Knee hurt after the walk."},
}
SHOWN_ON = {
    "medication": "/records/medications",
    "allergy": "/records/allergies",
    "condition": "/records/problems?show=all",
    "symptom": "/records/problems",
    "immunization": "/records/immunizations",
    "note": "/records/documents",
}


@pytest.mark.parametrize("kind", list(GOOD))
def test_each_kind_is_saved_and_shown_as_yours(
    app: Flask, client: FlaskClient, me: int, kind: str
) -> None:
    assert client.get(f"/entries/new/{kind}").status_code == 200
    answer = client.post(f"/entries/new/{kind}", data=GOOD[kind])
    assert answer.status_code == 302
    page = client.get(SHOWN_ON[kind]).text
    assert 'class="source source-you"' in page and 'class="mine-link"' in page
    if kind == "symptom":
        assert "Symptom or concern" in page
    entry_id = int(page.split('class="mine-link" href="/entries/')[1].split('"')[0])
    form = client.get(f"/entries/{entry_id}/edit").text
    for value in GOOD[kind].values():
        if value not in ("yes", "0", "allergy", "active", "resolved", "food", "moderate"):
            assert escape_for_html(value.split("T")[0]) in form  # the entry, back in its form


# Per kind and field: (value, the message it gets). "<missing>" leaves the field out.
BAD = [
    ("medication", "name", "<missing>", "Enter a name, or pick one from the list."),
    ("medication", "name", HUGE, "That is too long: use at most 200 characters"),
    ("medication", "name", SCRIPT, "Plain text only"),
    ("medication", "dose", HUGE, "That is too long: use at most 100 characters"),
    ("medication", "dose", SCRIPT, "Plain text only"),
    ("medication", "frequency", "hourly", "Choose one of the options given."),
    ("medication", "frequency", SCRIPT, "Choose one of the options given."),
    ("medication", "taking", "<missing>", "Say whether you take it now."),
    ("medication", "taking", "maybe", "Choose one of the options given."),
    ("medication", "started", "2999-01-01", "That date is in the future."),
    ("medication", "started", "1850-01-01", "Enter a date after 1900."),
    ("medication", "started", "soon", "Enter a real date (day, month and year)."),
    ("medication", "started", SCRIPT, "Enter a real date (day, month and year)."),
    ("medication", "note", HUGE, "That is too long: use at most 1000 characters"),
    ("medication", "note", SCRIPT, "Plain text only"),
    ("allergy", "name", "", "Enter a name, or pick one from the list."),
    ("allergy", "name", SCRIPT, "Plain text only"),
    ("allergy", "kind", "sneeze", "Choose one of the options given."),
    ("allergy", "category", "plants", "Choose one of the options given."),
    ("allergy", "reaction", HUGE, "That is too long: use at most 200 characters"),
    ("allergy", "reaction", SCRIPT, "Plain text only"),
    ("allergy", "severity", "deadly", "Choose one of the options given."),
    ("allergy", "status", "<missing>", "Say whether you have it now or it is over."),
    ("allergy", "since", "31/12/2000", "Enter a real date (day, month and year)."),
    ("condition", "name", HUGE, "That is too long: use at most 200 characters"),
    ("condition", "status", "gone", "Choose one of the options given."),
    ("condition", "ended", "2009-01-01", "It cannot end before it started."),
    ("condition", "since", "2999-01-01", "That date is in the future."),
    ("condition", "note", SCRIPT, "Plain text only"),
    ("symptom", "name", SCRIPT, "Plain text only"),
    ("symptom", "when", "<missing>", "Enter the date and time."),
    ("symptom", "when", "2999-01-01T10:00", "That time is in the future."),
    ("symptom", "when", SCRIPT, "Enter a real date and time."),
    ("symptom", "severity", "<missing>", "Say how bad it is."),
    ("symptom", "severity", "extreme", "Choose one of the options given."),
    ("immunization", "name", "<missing>", "Enter a name, or pick one from the list."),
    ("immunization", "given", "<missing>", "Enter the date you had it."),
    ("immunization", "given", "2999-01-01", "That date is in the future."),
    ("immunization", "given", HUGE, "Enter a real date (day, month and year)."),
    ("immunization", "place", HUGE, "That is too long: use at most 200 characters"),
    ("immunization", "place", SCRIPT, "Plain text only"),
    ("note", "title", "<missing>", "Give your note a title."),
    ("note", "title", HUGE, "That is too long: use at most 120 characters"),
    ("note", "title", SCRIPT, "Plain text only"),
    ("note", "text", "", "Write something."),
    ("note", "text", "x" * 6000, "That is too long: use at most 5000 characters"),
    ("note", "text", SCRIPT, "Plain text only"),
]


@pytest.mark.parametrize(("kind", "field", "value", "message"), BAD)
def test_coded_bad_input_is_explained_and_nothing_is_saved(
    app: Flask, client: FlaskClient, me: int, kind: str, field: str, value: str, message: str
) -> None:
    data = {**GOOD[kind], field: value}
    if value == "<missing>":
        del data[field]
    answer = client.post(f"/entries/new/{kind}", data=data)
    assert answer.status_code == 200
    assert message in answer.text
    assert f'id="{field}-error"' in answer.text
    assert stored(app) == 0
    assert "<script>alert(1)</script>" not in answer.text


# Every field of every coded form, by its sort: (sort, required).
FIELDS = {
    "medication": {
        "name": ("text", True),
        "dose": ("text", False),
        "frequency": ("choice", False),
        "taking": ("choice", True),
        "started": ("date", False),
        "note": ("text", False),
    },
    "allergy": {
        "name": ("text", True),
        "kind": ("choice", True),
        "category": ("choice", False),
        "reaction": ("text", False),
        "severity": ("choice", False),
        "status": ("choice", True),
        "since": ("date", False),
        "note": ("text", False),
    },
    "condition": {
        "name": ("text", True),
        "status": ("choice", True),
        "since": ("date", False),
        "ended": ("date", False),
        "note": ("text", False),
    },
    "symptom": {
        "name": ("text", True),
        "when": ("datetime", True),
        "severity": ("choice", True),
        "note": ("text", False),
    },
    "immunization": {
        "name": ("text", True),
        "given": ("date", True),
        "place": ("text", False),
        "note": ("text", False),
    },
    "note": {"title": ("text", True), "text": ("text", True)},
}
REFUSED = {  # sort -> (invalid value, message for invalid, huge and script-bearing values)
    "text": ("   ", None),
    "choice": ("bogus", "Choose one of the options given."),
    "date": ("31/12/2000", "Enter a real date (day, month and year)."),
    "datetime": ("yesterday", "Enter a real date and time."),
}
TEXT_HUGE = "That is too long: use at most"
EVERY_FIELD = [
    (kind, field, case)
    for kind, fields in FIELDS.items()
    for field in fields
    for case in ("invalid", "missing", "huge", "script")
]


@pytest.mark.parametrize(("kind", "field", "case"), EVERY_FIELD)
def test_every_field_refuses_bad_values(
    app: Flask, client: FlaskClient, me: int, kind: str, field: str, case: str
) -> None:
    sort, required = FIELDS[kind][field]
    invalid, invalid_message = REFUSED[sort]
    data = {**GOOD[kind]}
    data[field] = {"invalid": invalid, "huge": HUGE, "script": SCRIPT, "missing": ""}[case]
    if case == "missing":
        del data[field]
    answer = client.post(f"/entries/new/{kind}", data=data)
    assert "<script>alert(1)</script>" not in answer.text  # never echoed unescaped
    refused = required or case in ("huge", "script") or sort != "text"
    if case == "missing" and not required:
        refused = False
    if case == "invalid" and sort == "text" and not required:
        refused = False  # blank optional text is simply left out
    if not refused:
        assert answer.status_code == 302, answer.text  # saved without it
        assert stored(app) >= 1
        return
    assert answer.status_code == 200
    assert f'id="{field}-error"' in answer.text
    assert stored(app) == 0
    if case == "huge":
        expected = TEXT_HUGE if sort == "text" else invalid_message
    elif case == "script":
        expected = "Plain text only" if sort == "text" else invalid_message
    elif case == "invalid":
        expected = invalid_message or ""
    else:
        expected = ""
    assert expected in answer.text


# ---- one fact from several sources -----------------------------------------------------------


def test_merged_medicine_with_conflict_and_split(app: Flask, client: FlaskClient, me: int) -> None:
    with app.app_context():
        account = db.session.get(Account, me)
        assert account is not None
        river = f.make_connection(db.session, account, "Riverside General Hospital")
        f.add_resources(
            db.session,
            river,
            [
                {
                    "resourceType": "MedicationRequest",
                    "id": "m1",
                    "status": "active",
                    "intent": "order",
                    "medicationCodeableConcept": {
                        "coding": [
                            {
                                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                "code": "316049",
                                "display": "Hydrochlorothiazide 25 MG",
                            }
                        ]
                    },
                    "subject": {"reference": f"Patient/{river.patient_id}"},
                }
            ],
        )
        db.session.commit()
    stopped = {**GOOD["medication"], "name": "Hydrochlorothiazide 25 mg", "taking": "no"}
    assert client.post("/entries/new/medication", data=stopped).status_code == 302
    page = client.get("/records/medications").text
    assert "Also reported by You." in page
    assert "Riverside General Hospital says current; you say stopped." in page
    link = page.split('href="/entries/split?')[1].split('"')[0].replace("&amp;", "&")
    confirm = client.get(f"/entries/split?{link}")
    assert confirm.status_code == 200 and "Are these different?" in confirm.text
    stranger = app.test_client()
    with app.app_context():
        other = f.make_account(db.session, "Other")
        db.session.commit()
        sign_in(stranger, other.id)
    assert stranger.get(f"/entries/split?{link}").status_code == 404
    assert stranger.post(f"/entries/split?{link}").status_code == 404
    done = client.post(f"/entries/split?{link}")
    assert done.status_code == 302 and done.headers["Location"].endswith("/records/medications")
    after = client.get("/records/medications?show=all").text
    assert "Also reported by" not in after
    assert after.count('class="item-title">Hydrochlorothiazide') == 2
    assert client.get("/entries/split?record=1").status_code == 404  # nothing to split


@pytest.mark.parametrize("tz", ["", "abc", SCRIPT, HUGE, "99999"])
def test_a_bad_time_zone_from_the_browser_falls_back_to_utc(
    app: Flask, client: FlaskClient, me: int, tz: str
) -> None:
    assert client.post("/entries/new/blood-pressure", data=bp(tz=tz)).status_code == 302
    with app.app_context():
        raw = db.session.scalars(
            sa.select(FhirRecord.raw).where(FhirRecord.resource_type == "Observation")
        ).one()
    assert raw["effectiveDateTime"] == "2026-03-04T08:30:00+00:00"
