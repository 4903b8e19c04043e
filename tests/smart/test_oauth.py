"""The authorization request and callback against a live sandbox EHR (checklist points 1-11)."""

from __future__ import annotations

import base64
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy.orm import Session, sessionmaker

from portal.db import transaction, utcnow
from portal.models import Account, EhrConnection, EhrServer, OAuthTransaction
from portal.sandbox.models import FhirResource
from portal.smart.crypto import digest
from portal.smart.errors import AuthorizationDenied, ClinicianSignIn, StateError, TokenError
from portal.smart.oauth import ContextItem, begin, complete, launch_context
from portal.smart.settings import SmartSettings
from portal.smart.tokens import connect, find_or_create_account_for_launch
from tests.live import (
    CLIENT_IDS,
    CLIENT_SECRET,
    REDIRECT_URI,
    Browser,
    LiveEhr,
    Recorder,
    consent_to,
    params_of,
    register_ehr,
    rows,
    sign_in_at_ehr,
    simulate_ehr_launch,
    standalone,
)


def start(
    factory: sessionmaker[Session],
    ehr: EhrServer,
    browser: Browser,
    smart: SmartSettings,
    **kwargs: object,
) -> str:
    with transaction(factory) as session:
        return begin(
            session,
            ehr,
            redirect_uri=REDIRECT_URI,
            browser_binding=browser.binding,
            settings=smart,
            **kwargs,  # type: ignore[arg-type]
        )


def finish(
    factory: sessionmaker[Session],
    smart: SmartSettings,
    callback: dict[str, str],
    binding: str,
    **kwargs: object,
):
    with transaction(factory) as session:
        return complete(
            session,
            state=callback.get("state"),
            code=callback.get("code"),
            error=callback.get("error"),
            browser_binding=binding,
            redirect_uri=REDIRECT_URI,
            settings=smart,
            **kwargs,  # type: ignore[arg-type]
        )


def transactions(factory: sessionmaker[Session]) -> list[OAuthTransaction]:
    with factory() as session:
        return list(session.scalars(sa.select(OAuthTransaction)))


# --- the request --------------------------------------------------------------------------------


def test_authorization_request_has_every_smart_parameter(
    factory, ehr: EhrServer, browser: Browser, smart: SmartSettings, live_ehr: LiveEhr
) -> None:
    url = start(factory, ehr, browser, smart, kind="standalone")
    assert url.startswith(live_ehr.base_url + "/auth/authorize?")
    params = params_of(url)
    assert params["response_type"] == "code"
    assert params["client_id"] == CLIENT_IDS["public"]
    assert params["redirect_uri"] == REDIRECT_URI
    assert params["aud"] == live_ehr.fhir_base
    assert params["code_challenge_method"] == "S256"
    assert "launch" not in params
    scope = params["scope"].split()
    assert {"openid", "fhirUser", "launch/patient", "offline_access"} <= set(scope)
    assert "patient/Observation.rs" in scope  # the sandbox advertises permission-v2
    # state: 256 random bits, stored only as a digest
    assert len(base64.urlsafe_b64decode(params["state"] + "==")) >= 16
    (tx,) = transactions(factory)
    assert tx.state_hash == digest(params["state"])
    assert params["state"] not in repr(
        rows(factory, sa.select(OAuthTransaction.__table__))  # every column of the row
    )
    assert tx.browser_binding_hash == digest(browser.binding)
    # PKCE S256 of a verifier kept encrypted
    verifier = smart.cipher.decrypt(tx.code_verifier_enc)
    assert verifier not in tx.code_verifier_enc
    assert 43 <= len(verifier) <= 128
    assert params["code_challenge"] == create_s256_code_challenge(verifier)
    assert params["nonce"] == tx.nonce
    assert tx.kind == "standalone" and tx.ehr_server_id == ehr.id
    assert timedelta(minutes=9) < tx.expires_at - utcnow() <= timedelta(minutes=10)


def test_states_are_unique(factory, ehr: EhrServer, browser: Browser, smart: SmartSettings) -> None:
    states = {params_of(start(factory, ehr, browser, smart))["state"] for _ in range(5)}
    assert len(states) == 5


def test_ehr_launch_request_carries_launch(
    factory, ehr: EhrServer, browser: Browser, smart: SmartSettings, live_ehr: LiveEhr
) -> None:
    launched = simulate_ehr_launch(live_ehr, browser, "christin_stiedemann")
    assert launched["iss"] == ehr.fhir_base
    url = start(factory, ehr, browser, smart, kind="ehr-launch", launch=launched["launch"])
    params = params_of(url)
    assert params["launch"] == launched["launch"]
    scope = params["scope"].split()
    assert {"launch", "online_access", "openid", "fhirUser"} <= set(scope)
    assert "launch/patient" not in scope


def test_ehr_launch_end_to_end_identity_from_the_token(
    factory, ehr: EhrServer, browser: Browser, smart: SmartSettings, live_ehr: LiveEhr
) -> None:
    patient = live_ehr.patient("arron_schamberger")
    accounts = []
    for _ in range(2):  # the second launch finds the same account
        launched = simulate_ehr_launch(live_ehr, browser, "arron_schamberger")
        url = start(factory, ehr, browser, smart, kind="ehr-launch", launch=launched["launch"])
        result = finish(factory, smart, consent_to(browser, url), browser.binding)
        assert result.patient == patient
        assert result.kind == "ehr-launch"
        assert result.sub and result.fhir_user and result.fhir_user.endswith(f"Patient/{patient}")
        assert result.need_patient_banner is True
        assert result.smart_style_url
        assert result.refresh_token  # online_access
        assert "launch" in result.granted_scope.split()
        with transaction(factory) as session:
            account = find_or_create_account_for_launch(session, ehr, result)
            connection = connect(session, result, account, settings=smart)
            accounts.append(account.id)
            assert connection.patient_id == patient and connection.subject == result.sub
    assert accounts[0] == accounts[1]
    assert rows(factory, sa.select(sa.func.count()).select_from(Account)) == [(1,)]


def test_a_clinicians_launch_from_the_sandbox_is_refused_in_words(
    factory, ehr: EhrServer, browser: Browser, smart: SmartSettings, live_ehr: LiveEhr
) -> None:
    launched = simulate_ehr_launch(live_ehr, browser, "arron_schamberger", clinician="any")
    url = start(factory, ehr, browser, smart, kind="ehr-launch", launch=launched["launch"])
    with pytest.raises(ClinicianSignIn) as refused:
        finish(factory, smart, consent_to(browser, url), browser.binding)
    assert refused.value.status == 403
    assert refused.value.ehr_id == ehr.id
    assert f"clinician's sign-in at {ehr.name}" in refused.value.public_message
    assert rows(factory, sa.select(sa.func.count()).select_from(EhrConnection)) == [(0,)]


def test_ehr_launch_from_a_visit_keeps_what_the_ehr_had_open(
    factory, ehr: EhrServer, browser: Browser, smart: SmartSettings, live_ehr: LiveEhr
) -> None:
    with live_ehr.sandbox_session() as session:
        visit = session.scalar(
            sa.select(FhirResource.resource_id).where(
                FhirResource.resource_type == "Encounter",
                FhirResource.patient_id == live_ehr.patient("arron_schamberger"),
            )
        )
    launched = simulate_ehr_launch(live_ehr, browser, "arron_schamberger", encounter=visit)
    url = start(factory, ehr, browser, smart, kind="ehr-launch", launch=launched["launch"])
    result = finish(factory, smart, consent_to(browser, url), browser.binding)
    assert result.encounter == visit
    assert result.context == (ContextItem("Encounter", visit),)
    with transaction(factory) as session:
        account = find_or_create_account_for_launch(session, ehr, result)
        connection = connect(session, result, account, settings=smart)
        assert connection.launch_context == [{"type": "Encounter", "id": visit, "role": "launch"}]
    # A later standalone connect of the same record has no launch context: it is cleared.
    with transaction(factory) as session:
        result.kind, result.encounter, result.context = "standalone", None, ()
        connection = connect(session, result, account, settings=smart)
        assert connection.launch_context == [] and connection.encounter_id is None


BASE = "https://ehr.example/fhir"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ({}, []),
        ({"encounter": "e1"}, [("Encounter", "e1", "launch")]),
        (  # SMART 2.x objects; role kept; the encounter comes first
            {
                "encounter": "e1",
                "fhirContext": [
                    {"reference": "DiagnosticReport/r1"},
                    {"reference": "Observation/o1", "role": "https://example.org/role/focus"},
                ],
            },
            [
                ("Encounter", "e1", "launch"),
                ("DiagnosticReport", "r1", "launch"),
                ("Observation", "o1", "https://example.org/role/focus"),
            ],
        ),
        ({"fhirContext": ["DocumentReference/d1"]}, [("DocumentReference", "d1", "launch")]),
        ({"fhirContext": [{"reference": f"{BASE}/Condition/c1"}]}, [("Condition", "c1", "launch")]),
        (  # what cannot be looked up on this EHR is left out
            {
                "fhirContext": [
                    {"reference": "https://elsewhere.example/fhir/Condition/c1"},
                    {"canonical": "http://example.org/Questionnaire/q"},
                    {"identifier": {"value": "x"}, "type": "ServiceRequest"},
                    {"reference": "Patient/p1"},
                    {"reference": "Condition/has spaces"},
                    {"reference": "condition/c1"},
                    {"reference": "Condition/c1/_history/2"},
                    {"reference": 5},
                    "",
                    None,
                ],
                "encounter": 7,
            },
            [],
        ),
        (  # repeated once; a hundred items are capped
            {"fhirContext": [f"Observation/o{i % 50}" for i in range(100)]},
            [("Observation", f"o{i}", "launch") for i in range(20)],
        ),
        ({"fhirContext": "DiagnosticReport/r1"}, []),  # not a list
    ],
)
def test_launch_context_is_read_liberally_and_kept_safe(token: dict, expected: list) -> None:
    found = launch_context(token, BASE)
    assert [(c.resource_type, c.resource_id, c.role) for c in found] == expected


# --- the callback -------------------------------------------------------------------------------


def test_standalone_launch_completes(
    factory, ehr: EhrServer, browser: Browser, smart: SmartSettings, live_ehr: LiveEhr
) -> None:
    sign_in_at_ehr(live_ehr, browser)
    result = standalone(factory, ehr, browser, smart)
    assert result.patient == live_ehr.patient("christin_stiedemann")
    assert result.access_token and result.refresh_token
    assert result.expires_at and result.expires_at > utcnow() + timedelta(minutes=30)
    assert "offline_access" in result.granted_scope.split()
    assert result.missing_sections == set() or result.missing_sections <= {"directory"}
    assert result.access_token not in repr(result) and result.refresh_token not in repr(result)
    (tx,) = transactions(factory)
    assert tx.used_at is not None


def test_pkce_verifier_and_code_go_to_the_token_endpoint_once(
    factory,
    ehr: EhrServer,
    browser: Browser,
    smart: SmartSettings,
    live_ehr: LiveEhr,
    recorder: Recorder,
) -> None:
    sign_in_at_ehr(live_ehr, browser)
    url = start(factory, ehr, browser, smart)
    callback = consent_to(browser, url)
    (tx,) = transactions(factory)
    finish(factory, smart, callback, browser.binding)
    (request,) = recorder.to("/auth/token")
    form = recorder.form(request)
    assert form["grant_type"] == "authorization_code"
    assert form["code"] == callback["code"]
    assert form["redirect_uri"] == REDIRECT_URI
    assert form["code_verifier"] == smart.cipher.decrypt(tx.code_verifier_enc)
    assert form["client_id"] == CLIENT_IDS["public"]
    assert "authorization" not in request.headers


@pytest.mark.parametrize("kind", ["wrong-browser", "replayed", "expired", "missing", "unknown"])
def test_bad_state_is_refused_and_nothing_else_happens(
    kind: str,
    factory,
    ehr: EhrServer,
    browser: Browser,
    smart: SmartSettings,
    live_ehr: LiveEhr,
    recorder: Recorder,
) -> None:
    sign_in_at_ehr(live_ehr, browser)
    url = start(factory, ehr, browser, smart)
    callback = consent_to(browser, url)
    binding = browser.binding
    if kind == "replayed":
        finish(factory, smart, callback, binding)
    elif kind == "wrong-browser":
        binding = "another-browsers-binding"
    elif kind == "expired":
        with transaction(factory) as session:
            session.execute(
                sa.update(OAuthTransaction).values(expires_at=utcnow() - timedelta(seconds=1))
            )
    elif kind == "missing":
        callback.pop("state")
    else:
        callback["state"] = callback["state"][:-4] + "AAAA"
    before = len(recorder.to("/auth/token"))
    with pytest.raises(StateError) as refused:
        finish(factory, smart, callback, binding)
    assert refused.value.status == 400
    assert len(recorder.to("/auth/token")) == before  # no code exchange was attempted
    assert rows(factory, sa.select(sa.func.count()).select_from(EhrConnection)) == [(0,)]
    if kind == "wrong-browser":
        (tx,) = transactions(factory)
        assert tx.used_at is None  # another browser cannot burn the patient's state


def test_error_on_callback_is_friendly_and_spends_the_state(
    factory,
    ehr: EhrServer,
    browser: Browser,
    smart: SmartSettings,
    live_ehr: LiveEhr,
    recorder: Recorder,
) -> None:
    sign_in_at_ehr(live_ehr, browser)
    url = start(factory, ehr, browser, smart)
    answer = browser.http.get(url)
    from tests.sandbox.flows import form_with

    form = form_with(answer.text, "decision")
    denied = browser.http.post(form.action, data=form.data(decision="deny"))
    callback = params_of(denied.headers["location"])
    assert callback["error"] == "access_denied"
    with pytest.raises(AuthorizationDenied) as refused:
        finish(factory, smart, callback, browser.binding)
    assert "chose not to share" in refused.value.public_message
    assert recorder.to("/auth/token") == []
    (tx,) = transactions(factory)
    assert tx.used_at is not None
    with pytest.raises(StateError):
        finish(factory, smart, callback, browser.binding)


def test_callback_at_another_redirect_uri_is_refused(
    factory, ehr: EhrServer, browser: Browser, smart: SmartSettings, live_ehr: LiveEhr
) -> None:
    sign_in_at_ehr(live_ehr, browser)
    callback = consent_to(browser, start(factory, ehr, browser, smart))
    with transaction(factory) as session, pytest.raises(StateError):
        complete(
            session,
            state=callback["state"],
            code=callback["code"],
            browser_binding=browser.binding,
            redirect_uri="http://127.0.0.1:5000/elsewhere",
            settings=smart,
        )


# --- client authentication ----------------------------------------------------------------------


@pytest.mark.parametrize("client_type", list(CLIENT_IDS))
def test_each_client_type_authenticates_at_the_sandbox(
    client_type: str,
    factory,
    browser: Browser,
    smart: SmartSettings,
    live_ehr: LiveEhr,
    recorder: Recorder,
    client_key: RSAKey,
) -> None:
    ehr = register_ehr(factory, live_ehr, client_type, smart)
    sign_in_at_ehr(live_ehr, browser)
    result = standalone(factory, ehr, browser, smart)
    assert result.access_token
    second = standalone(factory, ehr, browser, smart)
    requests = recorder.to("/auth/token")
    assert len(requests) == 2
    forms = [recorder.form(r) for r in requests]
    client_id = CLIENT_IDS[client_type]
    if client_type == "public":
        assert all(f["client_id"] == client_id for f in forms)
        assert not any("authorization" in r.headers for r in requests)
    elif client_type == "confidential-symmetric":
        expected = "Basic " + base64.b64encode(f"{client_id}:{CLIENT_SECRET}".encode()).decode()
        assert all(r.headers["authorization"] == expected for r in requests)
        assert not any("client_secret" in f for f in forms)
    else:
        assert not any("authorization" in r.headers for r in requests)
        jtis = set()
        for form in forms:
            assert form["client_assertion_type"] == (
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            )
            token = jwt.decode(form["client_assertion"], client_key, algorithms=["RS384"])
            assert token.header["alg"] == "RS384" and token.header["kid"] == client_key.kid
            claims = token.claims
            assert claims["iss"] == claims["sub"] == client_id
            assert claims["aud"] == live_ehr.token_url
            assert 0 < claims["exp"] - time.time() <= 300
            jtis.add(claims["jti"])
        assert len(jtis) == 2
    assert second.access_token != result.access_token


# --- mix-up -------------------------------------------------------------------------------------


def test_callback_naming_another_issuer_is_refused_before_any_exchange(
    factory,
    ehr: EhrServer,
    browser: Browser,
    smart: SmartSettings,
    live_ehr: LiveEhr,
    recorder: Recorder,
) -> None:
    sign_in_at_ehr(live_ehr, browser)
    callback = consent_to(browser, start(factory, ehr, browser, smart))
    with pytest.raises(TokenError):
        finish(factory, smart, callback, browser.binding, iss="https://other-ehr.test/fhir")
    assert recorder.to("/auth/token") == []
