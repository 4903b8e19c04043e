"""A browser an EHR launched sees that clinic only: not the other clinics, not the patient's own
entries, not the account; the account's password turns it into a full session."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.accounts import passwords
from portal.extensions import db
from portal.models import Account, EhrConnection, SessionKind
from portal.phr.entries import service as entries
from tests.phr import factories as f
from tests.sessions import begin
from tests.web.test_connect import FHIR, FakeEhr
from tests.web.test_connect import fake_ehr as fake_ehr  # the fixture
from tests.web.test_records_access import PAGES

PASSWORD = "correct horse battery"
ALLERGY = {"kind": "allergy", "category": "food", "severity": "moderate", "status": "active"}
OWN_ENTRY = "Kiwi from the market"
BETA_WORDS = ("Beta Clinic",)


@pytest.fixture
def patient(app: Flask) -> dict[str, Any]:
    """One person known to two clinics, with an entry of their own and a password."""
    with app.app_context():
        s = db.session
        account, alpha, _ = f.patient_with(
            s, "christin_stiedemann", name="Christin", ehr_name="Alpha Clinic"
        )
        account.email = "christin@example.org"
        account.password_hash = passwords.hash_password(PASSWORD)
        beta = f.make_connection(s, account, "Beta Clinic")
        f.add_resources(s, beta, [f.coverage("Patient/x", payer="Beta Payer Mutual")])
        s.commit()
        ids = {
            "account": account.id,
            "alpha": alpha.id,
            "beta": beta.id,
            "beta_ehr": beta.ehr_server_id,
            "doc": 1,
        }
    owner = app.test_client()  # the entry is made as the patient makes one
    with owner.session_transaction() as session:
        begin(session, ids["account"])
    added = owner.post("/entries/new/allergy", data={**ALLERGY, "name": OWN_ENTRY})
    assert added.status_code == 302
    page = owner.get("/records/allergies").text
    ids["own"] = int(re.findall(r'href="/entries/(\d+)"', page)[0])
    return ids


def launched(client: FlaskClient, patient: dict[str, Any]) -> FlaskClient:
    with client.session_transaction() as s:
        begin(s, patient["account"], SessionKind.LAUNCH, patient["alpha"])
    return client


@pytest.mark.parametrize("url", PAGES)
@pytest.mark.parametrize("fragment", [False, True])
def test_a_launch_session_sees_only_its_clinic_on_every_records_page(
    client: FlaskClient, patient: dict[str, Any], url: str, fragment: bool
) -> None:
    launched(client, patient)
    headers = {"HX-Request": "true"} if fragment else {}
    answer = client.get(url.format(doc=patient["doc"]), headers=headers)
    assert answer.status_code in (200, 404)
    for hidden in (*BETA_WORDS, "Beta Payer Mutual", OWN_ENTRY):
        assert hidden not in answer.text, (url, hidden)


def test_the_full_session_of_the_same_person_sees_both_clinics_and_own_entries(
    client: FlaskClient, patient: dict[str, Any]
) -> None:
    with client.session_transaction() as s:
        begin(s, patient["account"])
    assert "Beta Payer Mutual" in client.get("/records/coverage").text
    assert OWN_ENTRY in client.get("/records/allergies").text


# Everything that changes the account or reads beyond the clinic: (method, url).
ACCOUNT_PAGES = [
    ("GET", "/connect"),
    ("GET", "/connect/{beta_ehr}"),
    ("POST", "/connections/{alpha}/disconnect"),
    ("POST", "/connections/{beta}/disconnect"),
    ("GET", "/entries/new"),
    ("GET", "/entries/new/allergy"),
    ("POST", "/entries/new/allergy"),
    ("GET", "/entries/{own}"),
    ("GET", "/entries/{own}/edit"),
    ("POST", "/entries/{own}/edit"),
    ("POST", "/entries/{own}/delete"),
    ("POST", "/entries/{own}/restore"),
    ("POST", "/entries/{own}/send/{alpha}"),
    ("GET", "/entries/split?record=1&record=2"),
    ("GET", "/account"),
    ("POST", "/account/password"),
    ("POST", "/account/sessions/end-others"),
]


@pytest.mark.parametrize(("method", "url"), ACCOUNT_PAGES)
@pytest.mark.parametrize("fragment", [False, True])
def test_a_launch_session_is_asked_for_the_password_before_anything_of_the_account(
    app: Flask,
    client: FlaskClient,
    patient: dict[str, Any],
    method: str,
    url: str,
    fragment: bool,
) -> None:
    launched(client, patient)
    headers = {"HX-Request": "true"} if fragment else {}
    answer = client.open(
        url.format(**patient), method=method, headers=headers, data={"name": "Dust"}
    )
    target = answer.headers.get("HX-Redirect") if fragment else answer.headers.get("Location")
    assert answer.status_code in (200, 302) and target, answer.status_code
    assert urlsplit(target).path == "/account/unlock"
    assert OWN_ENTRY not in answer.text and "Beta" not in answer.text
    with app.app_context():
        assert db.session.get(EhrConnection, patient["alpha"]).status == "active"
        assert db.session.get(EhrConnection, patient["beta"]).status == "active"
        owner = db.session.get(Account, patient["account"])
        assert not entries.is_deleted(entries.entry_of(db.session, owner, patient["own"]))
        assert len(entries.history(db.session, owner, patient["own"])) == 1  # not edited


def test_a_launch_session_refreshes_its_clinic_but_no_other(
    client: FlaskClient, patient: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[int] = []
    monkeypatch.setattr(  # the sync job is enqueued, not run
        "portal.jobs.queue.enqueue", lambda _app, _kind, run: started.append(run)
    )
    launched(client, patient)
    assert client.post(f"/connections/{patient['beta']}/sync").status_code == 403
    assert not started
    assert client.post(f"/connections/{patient['alpha']}/sync").status_code == 302
    assert len(started) == 1
    status = client.get("/sync/status").text
    assert "Alpha Clinic" in status and "Beta Clinic" not in status
    assert client.get(f"/style/{patient['beta']}.css").status_code == 403


def test_the_password_opens_the_whole_record_under_a_new_id(
    app: Flask, client: FlaskClient, patient: dict[str, Any]
) -> None:
    launched(client, patient)
    page = client.get("/records/")
    assert "See everything" in page.text and "My clinics" not in page.text
    before = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    wrong = client.post("/account/unlock?next=/records/coverage", data={"password": "not it, no"})
    assert wrong.status_code == 400 and "not your portal password" in wrong.text
    assert "Beta Payer Mutual" not in client.get("/records/coverage").text
    right = client.post("/account/unlock?next=/records/coverage", data={"password": PASSWORD})
    assert right.status_code == 302 and right.headers["Location"] == "/records/coverage"
    assert client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value != before
    assert "Beta Payer Mutual" in client.get("/records/coverage").text
    assert OWN_ENTRY in client.get("/records/allergies").text
    old = app.test_client()
    old.set_cookie(app.config["SESSION_COOKIE_NAME"], before)
    assert old.get("/records/").status_code == 302  # the launch session is gone


def test_an_account_a_launch_made_chooses_a_password_to_open_everything(
    app: Flask, client: FlaskClient
) -> None:
    with app.app_context():
        account, alpha, _ = f.patient_with(db.session, "arron_schamberger", name="Arron")
        db.session.commit()
        ids = {"account": account.id, "alpha": alpha.id}
    launched(client, ids)
    form = client.get("/account/unlock")
    assert "has no password yet" in form.text
    weak = client.post(
        "/account/unlock", data={"email": "a@example.org", "password": "short", "confirm": "short"}
    )
    assert weak.status_code == 400
    done = client.post(
        "/account/unlock",
        data={
            "email": "arron@example.org",
            "password": "a long new password",
            "confirm": "a long new password",
        },
    )
    assert done.status_code == 302
    assert client.get("/account").status_code == 200
    client.post("/signout")
    again = client.post(
        "/signin", data={"email": "arron@example.org", "password": "a long new password"}
    )
    assert again.status_code == 302


def test_a_launch_session_ends_with_its_clinics_connection(
    app: Flask, client: FlaskClient, patient: dict[str, Any]
) -> None:
    launched(client, patient)
    assert client.get("/records/").status_code == 200
    with app.app_context():
        db.session.get(EhrConnection, patient["alpha"]).status = "reconnect_needed"
        db.session.commit()
    assert client.get("/records/").status_code == 403


# -- a real EHR launch through the callback -----------------------------------------------------


def patient_token(fake: FakeEhr, patient_id: str = "p-1"):
    def answer(request: httpx.Request) -> httpx.Response:
        (nonce,) = fake.nonces
        return httpx.Response(
            200,
            json={
                "access_token": "an-access-token",
                "token_type": "Bearer",
                "scope": "launch openid fhirUser patient/*.rs",
                "expires_in": 3600,
                "patient": patient_id,
                "id_token": _id_token(fake, nonce, f"{FHIR}/Patient/{patient_id}"),
            },
        )

    return answer


def _id_token(fake: FakeEhr, nonce: str, fhir_user: str) -> str:
    from joserfc import jwt

    now = int(time.time())
    claims = {"iss": FHIR, "aud": "portal", "sub": "patient-sub-1", "fhirUser": fhir_user}
    claims |= {"nonce": nonce, "iat": now, "exp": now + 300}
    return jwt.encode({"alg": "RS256", "kid": fake.key.kid}, claims, fake.key, algorithms=["RS256"])


def ehr_launch(client: FlaskClient, fake: FakeEhr) -> Any:
    start = client.get("/launch", query_string={"iss": FHIR, "launch": "abc123"})
    params = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
    fake.nonces = [params["nonce"]]
    return client.get("/oauth/callback", query_string={"state": params["state"], "code": "c0de"})


def test_an_ehr_launch_begins_a_launch_session_under_a_new_id(
    app: Flask,
    client: FlaskClient,
    fake_ehr: FakeEhr,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("portal.jobs.queue.enqueue", lambda *a: None)  # no sync
    fake_ehr.token = patient_token(fake_ehr)
    client.get("/signin")
    before = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    answer = ehr_launch(client, fake_ehr)
    assert answer.status_code == 302 and answer.headers["Location"] == "/records/"
    assert client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value != before
    with client.session_transaction() as s:
        assert s.kind is SessionKind.LAUNCH and s.connection_id is not None
    assert urlsplit(client.get("/connect").headers["Location"]).path == "/account/unlock"


def test_a_launch_into_an_account_with_a_password_never_opens_it_whole(
    app: Flask,
    client: FlaskClient,
    fake_ehr: FakeEhr,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The launch finds the account by (EHR, patient, sub); having a password, it stays closed."""
    monkeypatch.setattr("portal.jobs.queue.enqueue", lambda *a: None)  # no sync
    fake_ehr.token = patient_token(fake_ehr)
    ehr_launch(client, fake_ehr)
    with app.app_context():
        connection = db.session.query(EhrConnection).one()
        connection.account.email = "p1@example.org"
        connection.account.password_hash = passwords.hash_password(PASSWORD)
        db.session.commit()
    second = app.test_client()
    ehr_launch(second, fake_ehr)
    with second.session_transaction() as s:
        assert s.kind is SessionKind.LAUNCH
    assert urlsplit(second.get("/account").headers["Location"]).path == "/account/unlock"
    assert re.search("See everything", second.get("/records/").text)


def test_guessing_the_password_from_a_launch_session_pauses_like_sign_in(
    make_app: Callable[..., Flask], patient: dict[str, Any]
) -> None:
    limited = make_app(RATELIMIT_ENABLED=True, SIGNIN_ACCOUNT_FAILURE_LIMIT="3 per 15 minutes")
    client = launched(limited.test_client(), patient)
    for _ in range(3):
        assert client.post("/account/unlock", data={"password": "a wrong guess"}).status_code == 400
    paused = client.post("/account/unlock", data={"password": PASSWORD})
    assert paused.status_code == 429 and "paused" in paused.text
    assert "Beta Payer Mutual" not in client.get("/records/coverage").text
