"""The patient's own entries: add, look at (with history), edit, delete and undo.

Only the owner of a record writes to it: every view checks that the signed-in person is
opening their own record and that the entry is one of theirs (`entries.entry_of`).
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response

from portal import jobs
from portal.db import utcnow
from portal.extensions import db
from portal.models import Account
from portal.phr import localtime, measures, merge
from portal.phr.entries import service
from portal.phr.entries.catalog import MEASURE_BY_KEY, MEASURES, Measure
from portal.phr.own import own_medicine_words, reaction_words
from portal.phr.records import Records
from portal.phr.words import concept_text, date_text, number, unit_words
from portal.sync import writeback
from portal.web.auth import current_account, full_session_required, record_or_403
from portal.web.entry_forms import (
    KIND_BY_KEY,
    KINDS,
    EntryKind,
    MeasurementForm,
    SymptomForm,
    kind_of,
)

bp = Blueprint("entries", __name__, url_prefix="/entries")


def _owner() -> Account:
    """The signed-in person, writing to their own record (nobody else writes to it)."""
    record = record_or_403()
    if not record.is_owner:
        abort(403)
    account = current_account()
    assert account is not None
    return account


def _measure(key: str) -> Measure:
    measure = MEASURE_BY_KEY.get(key)
    if measure is None:
        abort(404)
    return measure


@bp.get("/new")
@full_session_required
def choose() -> str:
    _owner()
    return render_template("entries/choose.html", measures=MEASURES, kinds=KINDS)


@bp.route("/new/<key>", methods=["GET", "POST"])
@full_session_required
def add(key: str) -> Response | str:
    account = _owner()
    if key in KIND_BY_KEY:
        return _add_coded(account, KIND_BY_KEY[key])
    measure = _measure(key)
    form = MeasurementForm(measure)
    if form.is_submitted():
        entry = form.checked()
        if entry is not None:
            record = service.add_measurement(db.session, account, entry)
            flash(f"Saved your {measure.name.lower()} reading.")
            return redirect(url_for("records.vitals", _anchor=f"vital-{_kind(record.code)}"))
    else:
        form.unit.data = form.unit.data or measures.entry_unit(measure.key, measure.unit_codes)
        if form.when.data is None:
            _now_on_their_clock(form)
    return render_template("entries/measurement.html", form=form, measure=measure, editing=None)


def _add_coded(account: Account, kind: EntryKind) -> Response | str:
    form = kind.form()
    if form.validate_on_submit():
        service.add(db.session, account, form.builder())
        flash(f"Saved {kind.title} to your record.")
        return redirect(url_for(kind.listed_at))
    if not form.is_submitted() and isinstance(form, SymptomForm) and form.when.data is None:
        _now_on_their_clock(form)
    return render_template("entries/coded.html", form=form, kind=kind, editing=None)


@bp.get("/<int:record_id>")
@full_session_required
def show(record_id: int) -> str:
    account = _owner()
    record = _entry(account, record_id)
    revisions = service.history(db.session, account, record_id)
    return render_template(
        "entries/show.html",
        entry=_summary(record.raw),
        record=record,
        deleted=service.is_deleted(record),
        back=_back(record.raw),
        targets=writeback.targets(db.session, account, record),
        revisions=[(r, _summary(r.raw)) for r in revisions],
    )


@bp.route("/<int:record_id>/edit", methods=["GET", "POST"])
@full_session_required
def edit(record_id: int) -> Response | str:
    account = _owner()
    record = _entry(account, record_id)
    if service.is_deleted(record):
        abort(404)
    kind = kind_of(record.raw)
    if kind is not None:
        return _edit_coded(account, record, kind)
    measure = next((m for m in MEASURES if m.loinc == record.code), None)
    if measure is None:
        abort(404)
    form = MeasurementForm(measure)
    if form.is_submitted():
        entry = form.checked()
        if entry is not None:
            service.edit_measurement(db.session, account, record_id, entry)
            flash(f"Saved the change to your {measure.name.lower()} reading.")
            return redirect(url_for("entries.show", record_id=record_id))
    elif not form.restored:
        form.fill(record.raw)
    return render_template("entries/measurement.html", form=form, measure=measure, editing=record)


def _edit_coded(account: Account, record: Any, kind: EntryKind) -> Response | str:
    form = kind.form()
    if form.validate_on_submit():
        service.edit(db.session, account, record.id, form.builder())
        flash(f"Saved the change to {kind.title}.")
        return redirect(url_for("entries.show", record_id=record.id))
    if not form.is_submitted() and not form.restored:
        form.fill(record.raw)
    return render_template("entries/coded.html", form=form, kind=kind, editing=record)


@bp.post("/<int:record_id>/send/<int:connection_id>")
@full_session_required
def send(record_id: int, connection_id: int) -> Response:
    """Send an entry to a clinic (or try again): queued here, sent in the background."""
    account = _owner()
    _entry(account, record_id)
    try:
        queued = writeback.queue(db.session, account, record_id, connection_id)
    except service.EntryNotFound:
        abort(404)
    except writeback.NotAllowed as exc:
        flash(str(exc))
        return redirect(url_for("entries.show", record_id=record_id))
    if queued.fresh:
        jobs.later("writeback.send", queued.writeback.id)
        flash("Sending it to your clinic. This page shows how it went.")
    else:  # a stale page's button: it was sent (or is being sent) already
        flash(queued.already or "")
    return redirect(url_for("entries.show", record_id=record_id))


@bp.post("/<int:record_id>/delete")
@full_session_required
def delete(record_id: int) -> Response:
    account = _owner()
    _entry(account, record_id)
    service.delete(db.session, account, record_id)
    flash("Deleted. You can undo this below.")
    return redirect(url_for("entries.show", record_id=record_id))


@bp.post("/<int:record_id>/restore")
@full_session_required
def restore(record_id: int) -> Response:
    account = _owner()
    _entry(account, record_id)
    service.restore(db.session, account, record_id)
    flash("Restored: the entry is back in your record.")
    return redirect(url_for("entries.show", record_id=record_id))


CATEGORY_PAGES = {
    "problems": "records.problems",
    "diagnoses": "records.problems",
    "medications": "records.medications",
    "allergies": "records.allergies",
    "immunizations": "records.immunizations",
    "labs": "records.labs",
    "observations": "records.labs",
    "vitals": "records.vitals",
    "visits": "records.visits",
    "procedures": "records.procedures",
    "careplans": "records.care_plans",
    "goals": "records.care_plans",
    "careteam": "records.care_team",
    "directory": "records.care_team",
    "documents": "records.documents",
    "reports": "records.documents",
    "imaging": "records.imaging_studies",
}


@bp.route("/split", methods=["GET", "POST"])
@full_session_required
def split() -> Response | str:
    """The patient says records folded into one item are not the same fact."""
    return _fold_choice(apart=True)


@bp.route("/same", methods=["GET", "POST"])
@full_session_required
def join() -> Response | str:
    """The patient takes back a split: these records are the same fact after all."""
    return _fold_choice(apart=False)


def _fold_choice(*, apart: bool) -> Response | str:
    """Confirm (GET) and record (POST) a split, or the undoing of one, of this person's records."""
    account = _owner()
    records = Records(db.session, record_or_403())
    ids = request.values.getlist("record", type=int)[:10]
    rows = [records.record(i) for i in dict.fromkeys(ids)]
    found = [r for r in rows if r is not None]
    if len(found) < 2 or len(found) != len(rows):
        abort(404)  # not records of this person's (or not enough of them)
    split_here = any(
        frozenset((a.id, b.id)) in records.splits for a in found for b in found if a.id < b.id
    )
    if not apart and not split_here:
        abort(404)  # nothing of them was split
    back = url_for(CATEGORY_PAGES.get(found[0].category, "records.summary"))
    if request.method == "POST":
        (merge.split if apart else merge.join)(db.session, account.id, [r.id for r in found])
        service.changed(service.own_source(db.session, account))  # the pages change
        flash(
            "Done: they are shown separately now."
            if apart
            else "Done: they are shown as one again."
        )
        return redirect(back)
    items = [(records.source(r), r.display or r.resource_type) for r in found]
    template = "entries/split.html" if apart else "entries/join.html"
    return render_template(template, items=items, ids=[r.id for r in found], back=back)


def _now_on_their_clock(form: Any) -> None:
    """A new entry's `when`: now on the patient's clock (the browser's, once it runs)."""
    form.when.data, minutes = localtime.now_on_their_clock(utcnow())
    form.tz.data = str(minutes)


def _entry(account: Account, record_id: int) -> Any:
    try:
        return service.entry_of(db.session, account, record_id)
    except service.EntryNotFound:
        abort(404)


def _kind(code: str | None) -> str:
    from portal.phr.vitals import KIND_BY_CODE

    kind = KIND_BY_CODE.get(code or "")
    return kind.key if kind else "others"


def _back(raw: dict[str, Any]) -> tuple[str, str]:
    """Where this entry is listed: (url, words)."""
    kind = kind_of(raw)
    if kind is None:
        return url_for("records.vitals"), "Back to vital signs"
    return url_for(kind.listed_at), "Back to your record"


def _summary(raw: dict[str, Any]) -> dict[str, str | None]:
    """An entry in words, for its page and its history."""
    kind = kind_of(raw)
    notes = raw.get("note") or []
    note = notes[0].get("text") if notes else None
    if kind is None:  # a measurement
        quantities = [c.get("valueQuantity") or {} for c in raw.get("component") or []]
        if quantities:
            value = "/".join(_number_of(q) for q in quantities)
            unit = unit_words(quantities[0].get("code"))
        else:
            q = raw.get("valueQuantity") or {}
            value, unit = _number_of(q), unit_words(q.get("code"))
            chosen = measures.in_chosen_units(_kind(_code(raw)), q, _code(raw))
            unit = f"{unit} ({chosen})" if chosen else unit  # as entered, then in theirs
        when = raw.get("effectiveDateTime")
        return {
            "name": (raw.get("code") or {}).get("text"),
            "value": f"{value} {unit}".strip(),
            "when": date_text(when),
            "time": _time(when),
            "note": note,
        }
    name = concept_text(
        raw.get("code") or raw.get("medicationCodeableConcept") or raw.get("vaccineCode")
    )
    when = (
        raw.get("onsetDateTime")
        or raw.get("occurrenceDateTime")
        or raw.get("authoredOn")
        or raw.get("date")
    )
    if kind.key == "medication":  # "You take it since 21 May 1963": the date is in the words
        when = None
    value = {
        "medication": _medication_words(raw),
        "allergy": _status_words(raw),
        "condition": _status_words(raw),
        "symptom": concept_text(raw.get("severity")) or "",
        "immunization": "Given",
        "note": raw.get("description") or "Note",
    }[kind.key]
    return {
        "name": name or kind.heading,
        "value": value,
        "when": date_text(when),
        "time": _time(when),
        "note": note,
        "reaction": reaction_words(raw) if kind.key == "allergy" else None,
    }


def _time(when: Any) -> str | None:
    """The clock time of a moment on the patient's clock (None for a date only)."""
    at = localtime.moment(when)
    return localtime.time_text(at) if at is not None else None


def _code(raw: dict[str, Any]) -> str | None:
    codings = (raw.get("code") or {}).get("coding") or [{}]
    code = codings[0].get("code")
    return str(code) if code else None


def _medication_words(raw: dict[str, Any]) -> str:
    taking = own_medicine_words(raw, raw.get("status") == "active")
    dosage = ((raw.get("dosageInstruction") or [{}])[0]).get("text")
    return f"{taking}: {dosage}" if dosage else taking


def _status_words(raw: dict[str, Any]) -> str:
    codes = [c.get("code") for c in (raw.get("clinicalStatus") or {}).get("coding", [])]
    return "Current" if "active" in codes else "Over"


def _number_of(quantity: dict[str, Any]) -> str:
    value = quantity.get("value")
    return number(value) if isinstance(value, int | float) else "?"  # with the digits typed
