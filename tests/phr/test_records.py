"""The records domain against Synthea patients: what each section shows, in plain words."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.phr import documents, labs, lists, summary, visits, vitals
from portal.phr import records as rec
from portal.phr.access import open_record
from portal.phr.classify import classify
from portal.phr.records import Records
from tests.phr import factories as f


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with app.app_context():
        yield db.session


def records_of(session: Session, account_id: int) -> Records:
    return Records(session, open_record(session, account_id))


def of_category(resources: list[dict[str, Any]], category: str) -> list[dict[str, Any]]:
    return [r for r in resources if classify(r).category == category]


# ---- labs ---------------------------------------------------------------------------------


def test_every_lab_result_of_vito_is_in_exactly_one_test(session: Session) -> None:
    account, _, resources = f.patient_with(session, "vito_feeney")
    expected = sum(f.count_category(resources, c) for c in labs.RESULTS)
    assert f.count_category(resources, "labs") == 636  # and his exam and procedure findings
    assert expected > 636
    records = records_of(session, account.id)
    overview = labs.overview(records, 1)
    assert overview.total_results == expected
    keys = []
    for page in range(1, overview.tests.pages + 1):
        keys += [t.key for t in labs.overview(records, page).tests.items]
    assert len(keys) == len(set(keys)) == overview.tests.total
    histories = [labs.test_history(records, key) for key in keys]
    assert sum(len(h.results) for h in histories if h) == expected
    by_code: dict[str, int] = {}
    for r in [r for c in labs.RESULTS for r in of_category(resources, c)]:
        code = r["code"]["coding"][0]["code"]
        by_code[code] = by_code.get(code, 0) + 1
    assert {h.key: h.count for h in histories if h} == by_code


def test_flags_from_interpretation_and_from_the_normal_range(session: Session) -> None:
    account, connection, resources = f.patient_with(session, "christin_stiedemann")
    chol = next(
        r for r in of_category(resources, "labs") if r["code"]["coding"][0]["code"] == "2093-3"
    )
    high = f.variant(
        f.with_range(chol, 100, 199),
        effectiveDateTime="2030-01-01T00:00:00Z",
        valueQuantity={**chol["valueQuantity"], "value": 240},
    )
    low_by_lab = f.variant(
        chol,
        effectiveDateTime="2030-01-02T00:00:00Z",
        interpretation=[{"coding": [{"code": "L"}]}],
    )
    normal_by_lab = f.variant(
        f.with_range(chol, 100, 199),
        effectiveDateTime="2030-01-03T00:00:00Z",
        valueQuantity={**chol["valueQuantity"], "value": 250},
        interpretation=[{"coding": [{"code": "N"}]}],
    )
    f.add_resources(session, connection, [high, low_by_lab, normal_by_lab])
    test = labs.test_history(records_of(session, account.id), "2093-3")
    assert test is not None
    newest = test.results[:3]
    assert newest[0].flag is None  # the lab said normal: we do not second-guess it
    assert newest[1].flag and newest[1].flag.words == "Low"
    assert newest[2].flag and newest[2].flag.words == "High" and newest[2].flag.code == "H"
    assert newest[2].range == "100\u2013199 mg/dL"
    chart = test.series[0].chart
    assert chart is not None and chart.band is not None and chart.flagged
    recent = labs.recent_results(records_of(session, account.id), 3)
    assert [res.flag.words if res.flag else None for _, res in recent] == [None, "Low", "High"]


def test_units_merged_only_when_the_conversion_is_safe(session: Session) -> None:
    account, connection, resources = f.patient_with(session, "christin_stiedemann")
    chol = next(
        r for r in of_category(resources, "labs") if r["code"]["coding"][0]["code"] == "2093-3"
    )
    in_g_per_l = f.variant(
        chol,
        effectiveDateTime="2030-01-01T00:00:00Z",
        valueQuantity={
            "value": 1.95,
            "unit": "g/L",
            "system": "http://unitsofmeasure.org",
            "code": "g/L",
        },
    )
    in_mmol = f.variant(
        chol,
        effectiveDateTime="2030-01-02T00:00:00Z",
        valueQuantity={
            "value": 5.3,
            "unit": "mmol/L",
            "system": "http://unitsofmeasure.org",
            "code": "mmol/L",
        },
    )
    f.add_resources(session, connection, [in_g_per_l, in_mmol])
    test = labs.test_history(records_of(session, account.id), "2093-3")
    assert test is not None
    assert [s.unit for s in test.series] == ["mg/dL", "mmol/L"]
    converted = next(r for r in test.results if r.reported)
    assert converted.text == "195 mg/dL" and converted.reported == "1.95 g/L as reported"
    assert test.results[0].text == "5.3 mmol/L"  # the newest, in its own series' unit
    assert test.count == len(test.results) == sum(s.count for s in test.series)


def test_data_absent_reason_shown_as_such(session: Session) -> None:
    account, connection, resources = f.patient_with(session, "arron_schamberger")
    lab = of_category(resources, "labs")[0]
    missing = f.variant(lab, effectiveDateTime="2031-01-01T00:00:00Z")
    del missing["valueQuantity"]
    missing["dataAbsentReason"] = {"coding": [{"code": "asked-unknown"}]}
    f.add_resources(session, connection, [missing])
    key = missing["code"]["coding"][0]["code"]
    test = labs.test_history(records_of(session, account.id), key)
    assert test is not None
    assert test.latest.text == "Not recorded (asked but unknown)" and test.latest.absent


# ---- vitals -------------------------------------------------------------------------------


def test_vital_signs_of_vito(session: Session) -> None:
    account, _, resources = f.patient_with(session, "vito_feeney")
    data = vitals.vitals(records_of(session, account.id))
    assert data.total == f.count_category(resources, "vitals")
    cards = {c.key: c for c in data.cards}
    assert {"blood-pressure", "weight", "height", "bmi"} <= set(cards)
    bp_panels = [
        r for r in of_category(resources, "vitals") if r["code"]["coding"][0]["code"] == "55284-4"
    ]
    bp = cards["blood-pressure"]
    assert bp.count == len(bp_panels)
    assert bp.chart is not None and len(bp.chart.series) == 2
    assert bp.latest.text.endswith("mmHg") and "/" in bp.latest.text
    assert [name for name, _ in vitals.latest_vitals(records_of(session, account.id))][:2] == [
        "Blood pressure",
        "Weight",
    ]


def test_blood_pressure_from_separate_readings_and_pounds_to_kilograms(session: Session) -> None:
    account = f.make_account(session)
    connection = f.make_connection(session, account)
    at = "2024-05-01T10:00:00Z"

    def obs(code: str, value: float, unit: str) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "id": f"{code}-{value}",
            "status": "final",
            "category": [{"coding": [{"code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "effectiveDateTime": at,
            "valueQuantity": {"value": value, "code": unit, "system": "http://unitsofmeasure.org"},
        }

    f.add_resources(
        session,
        connection,
        [obs("8480-6", 131, "mm[Hg]"), obs("8462-4", 84, "mm[Hg]"), obs("29463-7", 200, "[lb_av]")],
    )
    cards = {c.key: c for c in vitals.vitals(records_of(session, account.id)).cards}
    assert cards["blood-pressure"].latest.text == "131/84 mmHg"
    assert cards["weight"].latest.text == "90.7 kg"
    assert cards["weight"].latest.reported == "200 lb as recorded"


# ---- lists ---------------------------------------------------------------------------------


def test_problems_split_into_active_and_resolved(session: Session) -> None:
    account, _, resources = f.patient_with(session, "vito_feeney")
    conditions = of_category(resources, "problems")
    resolved = [r for r in conditions if "abatementDateTime" in r]
    records = records_of(session, account.id)
    assert len(lists.problems(records, "all")) == len(conditions)
    past = lists.problems(records, "past")
    assert len(past) == len(resolved) > 0
    assert all(p.ended and not p.active for p in past)
    assert len(lists.problems(records, "active")) == len(conditions) - len(resolved)


def test_medications_current_and_past_with_reasons(session: Session) -> None:
    account, _, resources = f.patient_with(session, "vito_feeney")
    requests = of_category(resources, "medications")
    active = [r for r in requests if r["status"] == "active"]
    records = records_of(session, account.id)
    current = lists.medications(records, "current")
    assert len(current) == len(active)
    assert len(lists.medications(records, "past")) == len(requests) - len(active)
    assert any(m.reason for m in current)  # reasonReference resolved to the condition's name
    assert all(m.prescriber for m in current)  # requester resolved to the practitioner's name


def test_allergies_of_christin_with_criticality(session: Session) -> None:
    account, _, resources = f.patient_with(session, "christin_stiedemann")
    items = lists.allergies(records_of(session, account.id))
    assert len(items) == len(of_category(resources, "allergies")) == 6
    assert {a.criticality for a in items} <= {"Low risk", "High risk", "Risk not known"}
    assert all(a.criticality for a in items)
    assert {"Allergy to bee venom", "Shellfish allergy"} <= {a.name for a in items}


def test_reactions_with_severity(session: Session) -> None:
    account = f.make_account(session)
    connection = f.make_connection(session, account)
    f.add_resources(
        session,
        connection,
        [
            {
                "resourceType": "AllergyIntolerance",
                "id": "pen",
                "clinicalStatus": {"coding": [{"code": "active"}]},
                "criticality": "high",
                "category": ["medication"],
                "code": {"text": "Penicillin"},
                "reaction": [
                    {"manifestation": [{"text": "Hives"}], "severity": "severe"},
                    {"manifestation": [{"text": "Swollen lips"}]},
                ],
            }
        ],
    )
    (allergy,) = lists.allergies(records_of(session, account.id))
    assert allergy.high_risk and allergy.criticality == "High risk"
    assert allergy.kinds == "Medicine"
    assert [(r.what, r.severity) for r in allergy.reactions] == [
        ("Hives", "Severe"),
        ("Swollen lips", None),
    ]


def test_entered_in_error_is_hidden_everywhere(session: Session) -> None:
    account, connection, resources = f.patient_with(session, "christin_stiedemann")
    allergy = of_category(resources, "allergies")[0]
    wrong = f.variant(
        allergy,
        code={"text": "Allergy that never was"},
        verificationStatus={"coding": [{"code": "entered-in-error"}]},
    )
    lab = of_category(resources, "labs")[0]
    wrong_lab = f.variant(lab, status="entered-in-error", effectiveDateTime="2040-01-01")
    wrong_imm = f.variant(of_category(resources, "immunizations")[0], status="entered-in-error")
    f.add_resources(session, connection, [wrong, wrong_lab, wrong_imm])
    records = records_of(session, account.id)
    assert "Allergy that never was" not in {a.name for a in lists.allergies(records)}
    assert labs.overview(records).total_results == f.count_category(resources, "labs")
    assert all(r.id for _, r in labs.recent_results(records, 1))
    assert labs.recent_results(records, 1)[0][1].date != "1 Jan 2040"
    assert lists.immunizations(records).total == len(of_category(resources, "immunizations"))


def test_care_plans_goals_procedures(session: Session) -> None:
    account, _, resources = f.patient_with(session, "vito_feeney")
    records = records_of(session, account.id)
    plans = lists.care_plans(records)
    assert len(plans) == len(of_category(resources, "careplans"))
    assert any(p.activities for p in plans)
    assert plans[0].active  # active plans first
    assert len(lists.goals(records)) == len(of_category(resources, "goals"))
    page = lists.procedures(records, 1, size=10)
    assert page.total == len(of_category(resources, "procedures"))
    assert len(page.items) == 10 and page.has_next
    last = lists.procedures(records, 999, size=10)
    assert last.number == last.pages and not last.has_next


# ---- visits -------------------------------------------------------------------------------


def test_visits_show_what_happened_at_each(session: Session) -> None:
    account, _, resources = f.patient_with(session, "christin_stiedemann")
    encounters = of_category(resources, "visits")
    records = records_of(session, account.id)
    page = visits.visits(records, 1, size=100)
    assert page.total == len(encounters) == len(page.items)
    linked = [
        r
        for r in resources
        if isinstance(r.get("encounter"), dict)
        and classify(r).category in {c for _, cs in visits.CONTENT_CATEGORIES for c in cs}
    ]
    shown = sum(
        len(v.diagnoses)
        + len(v.procedures)
        + len(v.immunizations)
        + len(v.medications)
        + len(v.results)
        + len(v.careplans)
        + len(v.reports)
        for v in page.items
    )
    assert shown == len(linked)
    checkup = next(v for v in page.items if v.results)
    assert checkup.where and checkup.kind == "Office visit"


# ---- documents ----------------------------------------------------------------------------


def test_documents_text_html_and_pdf(session: Session) -> None:
    account = f.make_account(session)
    connection = f.make_connection(session, account)
    note = f.text_note("Patient/p", "Blood sugar better.\n<script>alert(1)</script>")
    page = f.html_note("Patient/p", "<p>Home after <b>2 days</b>.</p><script>alert(1)</script>")
    report = f.pdf_report("Patient/p")
    f.add_resources(session, connection, [note, page, report])
    records = records_of(session, account.id)
    found = {d.title: d for d in documents.documents(records).items}
    assert set(found) == {"Visit note", "Discharge summary", "Chest X-ray report"}
    assert found["Visit note"].attachments[0].text == note_text(note)
    html = found["Discharge summary"].attachments[0]
    assert html.text == "Home after 2 days." and "script" not in (html.text or "")
    pdf = found["Chest X-ray report"].attachments[0]
    assert pdf.text is None and pdf.downloadable and pdf.kind == "PDF"
    download = documents.download(records, found["Chest X-ray report"].id, 0)
    assert download is not None
    assert download.data.startswith(b"%PDF") and download.content_type == "application/pdf"
    assert download.filename == "chest-x-ray.pdf"
    html_download = documents.download(records, found["Discharge summary"].id, 0)
    assert html_download and html_download.content_type == "application/octet-stream"
    assert documents.download(records, found["Chest X-ray report"].id, 1) is None


def note_text(note: dict[str, Any]) -> str:
    import base64

    return base64.b64decode(note["content"][0]["attachment"]["data"]).decode()


def test_downloads_only_from_ones_own_record(session: Session) -> None:
    owner = f.make_account(session)
    f.add_resources(session, f.make_connection(session, owner), [f.pdf_report("Patient/p")])
    other = f.make_account(session)
    f.make_connection(session, other, "Lakeside Family Clinic")
    doc = documents.documents(records_of(session, owner.id)).items[0]
    assert documents.download(records_of(session, owner.id), doc.id, 0) is not None
    assert documents.download(records_of(session, other.id), doc.id, 0) is None


# ---- context: banner, sync (what each section holds: test_availability) -------------------


def test_banner_of_a_child_and_the_launch_flag(session: Session) -> None:
    account, connection, _ = f.patient_with(session, "arron_schamberger", name="Arron")
    banner = rec.banner(records_of(session, account.id), "Arron", date(2020, 1, 1))
    assert banner.name == "Arron Schamberger"
    assert banner.birth_date and banner.sex == "Male" and banner.show
    connection.need_patient_banner = False
    session.flush()
    assert not rec.banner(records_of(session, account.id), "", date(2020, 1, 1)).show
    f.make_connection(session, account, "Lakeside Family Clinic")
    assert rec.banner(records_of(session, account.id), "", date(2020, 1, 1)).show


def test_summary_of_vito(session: Session) -> None:
    account, _, resources = f.patient_with(session, "vito_feeney")
    data = summary.summary(records_of(session, account.id), datetime.now(UTC))
    assert data.problems and all(p.active for p in data.problems)
    assert data.medications and all(m.current for m in data.medications)
    assert len(data.labs) == summary.SHOWN
    assert data.immunization_count == len(of_category(resources, "immunizations"))
    assert len({i.name for i in data.immunizations}) == len(data.immunizations)
    assert data.connected
