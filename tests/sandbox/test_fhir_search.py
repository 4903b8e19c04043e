"""Search: every parameter, paging exactly once, the searchset Bundle, strict handling.

Expected results are computed from the shipped bundle files, not from the store's index.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from portal.sandbox.fhir.store import read_bundle_file
from tests.sandbox.conftest import DATA
from tests.sandbox.tokens import FHIR_JSON, assert_outcome, bearer, fetch_all, mint_token

NAME = "christin_stiedemann"  # has allergies, conditions, medications and care plans
OTHER = "raeann_okon"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


@cache
def resources(name: str, rtype: str) -> tuple[dict[str, Any], ...]:
    bundle = read_bundle_file(DATA / f"{name}.json.gz")
    return tuple(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype)


def ids_where(rtype: str, predicate: Callable[[dict[str, Any]], bool]) -> set[str]:
    return {r["id"] for r in resources(NAME, rtype) if predicate(r)}


def codings(value: Any) -> list[tuple[str | None, str]]:
    """(system, code) pairs of a CodeableConcept or a list of them."""
    concepts = value if isinstance(value, list) else [value]
    return [(c.get("system"), c["code"]) for cc in concepts if cc for c in cc.get("coding", [])]


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def NOTHING(resource: dict[str, Any]) -> bool:  # a name that reads as a constant in the tables
    return False


@pytest.fixture(scope="module")
def patient(loaded) -> str:
    return loaded[NAME].patient_id


@pytest.fixture(scope="module")
def token(sandbox_app, patient) -> str:
    return mint_token(sandbox_app, patient, "patient/*.rs")


@pytest.fixture
def search(http, token) -> Callable[..., set[str]]:
    """Run a search (all pages) and return the ids found, checking each appears once."""

    def run(path: str, params: Any = None) -> set[str]:
        found, _ = fetch_all(http, token, path, params)
        ids = [r["id"] for r in found]
        assert len(ids) == len(set(ids)), "a resource appeared twice"
        return set(ids)

    return run


# --- the Bundle ---------------------------------------------------------------------------


def test_searchset_bundle_shape(http, token, patient):
    response = http.get(
        "/fhir/Observation", params={"patient": patient, "_count": 5}, headers=bearer(token)
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(FHIR_JSON)
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    assert bundle["total"] == len(resources(NAME, "Observation"))
    assert len(bundle["entry"]) == 5
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"] == f"http://ehr.test/fhir/Observation/{resource['id']}"
        assert entry["search"] == {"mode": "match"}
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert links["self"].startswith("http://ehr.test/fhir/Observation?")
    assert parse_qs(urlsplit(links["self"]).query) == {"patient": [patient], "_count": ["5"]}
    assert links["next"].startswith("http://ehr.test/fhir/Observation?")


def test_every_page_shows_the_same_total_and_the_last_has_no_next(http, token):
    _, bundles = fetch_all(http, token, "/fhir/Observation", {"_count": 30})
    assert len(bundles) == 4  # 98 observations
    assert {b["total"] for b in bundles} == {98}
    assert [len(b["entry"]) for b in bundles] == [30, 30, 30, 8]
    assert not [link for link in bundles[-1]["link"] if link["relation"] == "next"]


@pytest.mark.parametrize(
    "rtype",
    [
        "Observation",
        "Encounter",
        "Claim",
        "ExplanationOfBenefit",
        "Immunization",
        "Procedure",
        "AllergyIntolerance",
        "MedicationRequest",
        "DiagnosticReport",
        "Condition",
        "CarePlan",
        "Patient",
    ],
)
def test_paging_returns_each_resource_exactly_once(search, patient, rtype):
    params = {"_count": 7} if rtype == "Patient" else {"patient": patient, "_count": 7}
    assert search(f"/fhir/{rtype}", params) == {r["id"] for r in resources(NAME, rtype)}


def test_count_defaults_to_the_page_size_and_is_capped(http, token, sandbox_app, monkeypatch):
    monkeypatch.setitem(sandbox_app.config, "DEFAULT_PAGE_SIZE", 4)
    monkeypatch.setitem(sandbox_app.config, "MAX_PAGE_SIZE", 9)
    default = http.get("/fhir/Observation", headers=bearer(token)).json()
    assert len(default["entry"]) == 4
    capped = http.get("/fhir/Observation?_count=500", headers=bearer(token)).json()
    assert len(capped["entry"]) == 9
    self_url = next(link["url"] for link in capped["link"] if link["relation"] == "self")
    assert parse_qs(urlsplit(self_url).query)["_count"] == ["9"]


def test_count_zero_gives_only_the_total(http, token):
    bundle = http.get("/fhir/Observation?_count=0", headers=bearer(token)).json()
    assert bundle["total"] == 98
    assert bundle["entry"] == []
    assert [link["relation"] for link in bundle["link"]] == ["self"]


def test_paging_is_stable_when_resources_are_added_meanwhile(http, token):
    """Keyset paging: a page boundary does not move when rows appear before it."""
    first = http.get("/fhir/Observation?_count=10", headers=bearer(token)).json()
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    again = http.get(nxt, headers=bearer(token)).json()
    twice = http.get(nxt, headers=bearer(token)).json()
    assert [e["resource"]["id"] for e in again["entry"]] == [
        e["resource"]["id"] for e in twice["entry"]
    ]
    assert not {e["resource"]["id"] for e in first["entry"]} & {
        e["resource"]["id"] for e in again["entry"]
    }


# --- patient and subject ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "form"),
    [
        ("patient", "{id}"),
        ("patient", "Patient/{id}"),
        ("patient", "http://ehr.test/fhir/Patient/{id}"),
        ("subject", "Patient/{id}"),
        ("subject", "{id}"),
    ],
)
def test_patient_and_subject_forms(search, patient, param, form):
    found = search("/fhir/Observation", {param: form.format(id=patient), "_count": 200})
    assert found == ids_where("Observation", lambda r: True)


def test_without_patient_a_compartment_search_is_limited_to_the_tokens_patient(search):
    assert search("/fhir/Observation", {"_count": 200}) == ids_where("Observation", lambda r: True)


# --- token parameters ----------------------------------------------------------------------


def has_coding(element: str, system: str | None, code: str) -> Callable[[dict[str, Any]], bool]:
    def check(resource: dict[str, Any]) -> bool:
        return any(
            c == code and (system is None or s == system) for s, c in codings(resource.get(element))
        )

    return check


@pytest.mark.parametrize(
    ("rtype", "params", "expected"),
    [
        ("Observation", {"category": "laboratory"}, has_coding("category", None, "laboratory")),
        (
            "Observation",
            {"category": f"{CATEGORY}|vital-signs"},
            has_coding("category", CATEGORY, "vital-signs"),
        ),
        ("Observation", {"category": "http://wrong.example|laboratory"}, NOTHING),
        (
            "Observation",
            {"category": "laboratory,survey"},
            lambda r: (
                has_coding("category", None, "laboratory")(r)
                or has_coding("category", None, "survey")(r)
            ),
        ),
        ("Observation", {"code": "http://loinc.org|8302-2"}, has_coding("code", None, "8302-2")),
        (
            "Observation",
            {"code": "8302-2,29463-7"},
            lambda r: any(c in ("8302-2", "29463-7") for _, c in codings(r["code"])),
        ),
        ("Observation", {"status": "final"}, lambda r: r["status"] == "final"),
        ("Observation", {"status": "|final"}, lambda r: r["status"] == "final"),
        ("Observation", {"status": "preliminary"}, NOTHING),
        ("MedicationRequest", {"status": "active"}, lambda r: r["status"] == "active"),
        (
            "MedicationRequest",
            {"status": "active,stopped"},
            lambda r: r["status"] in ("active", "stopped"),
        ),
        ("MedicationRequest", {"intent": "order"}, lambda r: r["intent"] == "order"),
        ("MedicationRequest", {"intent": "plan"}, NOTHING),
        (
            "MedicationRequest",
            {"code": "http://www.nlm.nih.gov/research/umls/rxnorm|"},
            lambda r: bool(codings(r["medicationCodeableConcept"])),
        ),
        (
            "Condition",
            {"clinical-status": "active"},
            has_coding("clinicalStatus", None, "active"),
        ),
        (
            "Condition",
            {
                "clinical-status": (
                    "http://terminology.hl7.org/CodeSystem/condition-clinical|resolved"
                )
            },
            has_coding("clinicalStatus", None, "resolved"),
        ),
        ("AllergyIntolerance", {"type": "allergy"}, lambda r: r.get("type") == "allergy"),
        ("AllergyIntolerance", {"category": "food"}, lambda r: "food" in r.get("category", [])),
        ("Encounter", {"type": "185349003"}, has_coding("type", None, "185349003")),
        ("CarePlan", {"intent": "order", "status": "active"}, lambda r: r["status"] == "active"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_token_parameters(search, rtype, params, expected):
    found = search(f"/fhir/{rtype}", {**params, "_count": 200})
    assert found == ids_where(rtype, expected)
    assert found or expected is NOTHING, "the test data should have matches"


def test_repeated_token_parameters_are_and_ed(search):
    found = search("/fhir/Observation", [("category", "laboratory"), ("category", "survey")])
    lab, survey = has_coding("category", None, "laboratory"), has_coding("category", None, "survey")
    assert found == ids_where("Observation", lambda r: lab(r) and survey(r)) == set()
    found = search("/fhir/Observation", [("category", "vital-signs"), ("code", "8302-2")])
    assert found == ids_where("Observation", has_coding("code", None, "8302-2"))


def test_identifier(search, patient):
    (me,) = resources(NAME, "Patient")
    ident = next(i for i in me["identifier"] if i["system"] == "http://hospital.smarthealthit.org")
    value = ident["value"]
    assert search("/fhir/Patient", {"identifier": value}) == {patient}
    assert search("/fhir/Patient", {"identifier": f"{ident['system']}|{value}"}) == {patient}
    assert search("/fhir/Patient", {"identifier": f"nope,{value}"}) == {patient}
    assert search("/fhir/Patient", {"identifier": f"http://other.example|{value}"}) == set()
    assert search("/fhir/Patient", {"identifier": f"|{value}"}) == set()  # it has a system


# --- dates ----------------------------------------------------------------------------------


def effective(r: dict[str, Any]) -> datetime:
    return instant(r["effectiveDateTime"])


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([("date", "2015")], lambda d: d.year == 2015),
        ([("date", "eq2015")], lambda d: d.year == 2015),
        ([("date", "ge2015"), ("date", "lt2016")], lambda d: d.year == 2015),
        ([("date", "ge2019")], lambda d: d.year >= 2019),
        ([("date", "gt2019")], lambda d: d.year > 2019),
        ([("date", "le2012")], lambda d: d.year <= 2012),
        ([("date", "lt2012")], lambda d: d.year < 2012),
        ([("date", "2015-03")], lambda d: (d.year, d.month) == (2015, 3)),
        ([("date", "ge2015-03-01"), ("date", "le2015-12-31")], lambda d: d.year == 2015),
        ([("date", "ne2015")], lambda d: d.year != 2015),
        ([("date", "ge2030")], lambda d: False),
    ],
    ids=lambda v: "&".join(f"{k}={x}" for k, x in v) if isinstance(v, list) else "check",
)
def test_date_prefixes_and_partial_dates(search, params, expected):
    found = search("/fhir/Observation", [*params, ("_count", "200")])
    assert found == ids_where("Observation", lambda r: expected(effective(r)))


def test_date_with_a_full_datetime(search):
    first = resources(NAME, "Observation")[0]
    when = effective(first)
    stamp = when.isoformat().replace("+00:00", "Z")
    same = ids_where("Observation", lambda r: effective(r) == when)
    assert first["id"] in search("/fhir/Observation", {"date": stamp})
    assert search("/fhir/Observation", {"date": stamp}) == same
    after = ids_where("Observation", lambda r: effective(r) > when)
    assert search("/fhir/Observation", {"date": f"gt{stamp}", "_count": 200}) == after


def test_date_on_periods(search):
    """Encounter.period: ge compares with the end, le with the start."""
    cut = datetime(2015, 1, 1, tzinfo=UTC)

    def period(r: dict[str, Any]) -> tuple[datetime, datetime]:
        return instant(r["period"]["start"]), instant(r["period"]["end"])

    found = search("/fhir/Encounter", {"date": "ge2015-01-01", "_count": 200})
    assert found == ids_where("Encounter", lambda r: period(r)[1] >= cut)
    found = search("/fhir/Encounter", {"date": "lt2015-01-01", "_count": 200})
    assert found == ids_where("Encounter", lambda r: period(r)[0] < cut)


def test_last_updated(search):
    loaded_at = resources(NAME, "Observation")  # loaded ids; their lastUpdated is the load time
    every = {r["id"] for r in loaded_at}
    assert search("/fhir/Observation", {"_lastUpdated": "ge2000", "_count": 200}) == every
    assert search("/fhir/Observation", {"_lastUpdated": "lt2000"}) == set()
    assert search("/fhir/Observation", {"_lastUpdated": "gt2999"}) == set()


def test_last_updated_against_meta(http, token, search):
    resource = http.get("/fhir/Observation?_count=1", headers=bearer(token)).json()["entry"][0]
    stamp = resource["resource"]["meta"]["lastUpdated"]
    every = ids_where("Observation", lambda r: True)
    assert search("/fhir/Observation", {"_lastUpdated": f"le{stamp}", "_count": 200}) == every
    assert search("/fhir/Observation", {"_lastUpdated": f"gt{stamp}"}) == set()


# --- _id, unknown parameters, bad values ------------------------------------------------------


def test_id_list(search):
    a, b, *_ = (r["id"] for r in resources(NAME, "Observation"))
    assert search("/fhir/Observation", {"_id": f"{a},{b}"}) == {a, b}
    assert search("/fhir/Observation", [("_id", a), ("_id", b)]) == set()  # AND
    assert search("/fhir/Observation", {"_id": "unknown"}) == set()


@pytest.mark.parametrize("query", ["code=8302-2,", "code=,8302-2", "code=8302-2&category="])
def test_empty_values_do_not_constrain(search, query):
    params = [tuple(p.split("=", 1)) for p in query.split("&")]
    assert search("/fhir/Observation", params) == ids_where(
        "Observation", has_coding("code", None, "8302-2")
    )


def test_unknown_parameters_are_ignored_and_left_out_of_the_self_link(http, token):
    response = http.get("/fhir/Observation?foo=bar&category=survey", headers=bearer(token))
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["total"] == len(ids_where("Observation", has_coding("category", None, "survey")))
    self_url = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert "foo" not in parse_qs(urlsplit(self_url).query)


def test_strict_handling_refuses_unknown_parameters(http, token):
    headers = {**bearer(token), "Prefer": "handling=strict"}
    body = assert_outcome(http.get("/fhir/Observation?foo=bar", headers=headers), 400, "invalid")
    assert "foo" in body["issue"][0]["diagnostics"]
    assert http.get("/fhir/Observation?category=survey", headers=headers).status_code == 200
    # A parameter another type has is still unknown for this one.
    assert http.get("/fhir/Patient?category=survey", headers=headers).status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "date=someday",
        "date=xx2015",
        "date=2015-13",
        "_lastUpdated=yesterday",
        "_count=-1",
        "_count=many",
        "_count=%C2%B2",  # "²" passes str.isdigit
        "_count=1234567890123456789012",
        "_cursor=x",
        "code:text=glucose",
        "category:not=survey",
    ],
)
def test_bad_values_and_modifiers_are_400(http, token, query):
    assert_outcome(http.get(f"/fhir/Observation?{query}", headers=bearer(token)), 400, "invalid")


# --- POST _search -----------------------------------------------------------------------------


def test_post_search_with_a_form_body(http, token, patient):
    response = http.post(
        "/fhir/Observation/_search",
        data={"patient": patient, "category": "laboratory", "_count": "5"},
        headers=bearer(token),
    )
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["total"] == len(
        ids_where("Observation", has_coding("category", None, "laboratory"))
    )
    self_url = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert parse_qs(urlsplit(self_url).query)["category"] == ["laboratory"]
    nxt = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    assert http.get(nxt, headers=bearer(token)).status_code == 200


def test_post_search_refuses_other_bodies(http, token):
    response = http.post("/fhir/Observation/_search", json={"a": 1}, headers=bearer(token))
    assert_outcome(response, 415, "not-supported")


def test_non_compartment_types_search_everything(http, token, loaded):
    bundle = http.get("/fhir/Organization?_count=100", headers=bearer(token)).json()
    organizations = {e["resource"]["id"] for e in bundle["entry"]}
    for name in loaded:
        assert {r["id"] for r in resources(name, "Organization")} <= organizations
