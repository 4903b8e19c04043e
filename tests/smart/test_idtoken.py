"""id_token validation and mix-up defence: forged tokens are refused (checklist point 11).

Forgeries replace the id_token in the live sandbox's real token response; claim forgeries
are signed with the sandbox's own key, so only the claim under test is wrong.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from sqlalchemy.orm import Session, sessionmaker

from portal.db import transaction
from portal.models import EhrServer
from portal.smart.errors import IdTokenError, TokenError
from portal.smart.oauth import begin, complete
from portal.smart.settings import SmartSettings
from tests.live import (
    CLIENT_IDS,
    REDIRECT_URI,
    Browser,
    LiveEhr,
    Recorder,
    consent_to,
    json_response,
    register_ehr,
    sign_in_at_ehr,
    start_live_ehr,
    stop_live_ehr,
)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


class Forge:
    """Replaces the id_token of the next token response with one built from `make(claims)`."""

    def __init__(self, live: LiveEhr, recorder: Recorder) -> None:
        self.live = live
        self.recorder = recorder
        self.key: RSAKey = live.app.extensions["sandbox_signing_key"]

    def install(self, make: Callable[[dict[str, Any], RSAKey], str]) -> None:
        def rewrite(request: httpx.Request, response: httpx.Response) -> httpx.Response:
            if not request.url.path.endswith("/auth/token") or response.status_code != 200:
                return response
            body = response.json()
            genuine = jwt.decode(body["id_token"], self.key, algorithms=["RS256"]).claims
            body["id_token"] = make(dict(genuine), self.key)
            return json_response(response, body)

        self.recorder.rewrite = rewrite

    def signed(self, claims: dict[str, Any], key: Any = None, kid: str | None = None) -> str:
        key = key or self.key
        header = {"alg": "RS256", "kid": kid or key.kid}
        return jwt.encode(header, claims, key, algorithms=["RS256"])


def run_launch(
    factory: sessionmaker[Session], ehr: EhrServer, browser: Browser, smart: SmartSettings
) -> Any:
    with transaction(factory) as session:
        url = begin(
            session, ehr, redirect_uri=REDIRECT_URI, browser_binding=browser.binding, settings=smart
        )
    callback = consent_to(browser, url)
    with transaction(factory) as session:
        return complete(
            session,
            state=callback["state"],
            code=callback["code"],
            browser_binding=browser.binding,
            redirect_uri=REDIRECT_URI,
            settings=smart,
        )


@pytest.fixture
def forge(live_ehr: LiveEhr, recorder: Recorder, browser: Browser) -> Forge:
    sign_in_at_ehr(live_ehr, browser)
    return Forge(live_ehr, recorder)


def test_a_genuine_token_re_signed_passes(
    factory, ehr: EhrServer, browser: Browser, smart: SmartSettings, forge: Forge
) -> None:
    forge.install(lambda claims, key: forge.signed(claims))
    result = run_launch(factory, ehr, browser, smart)
    assert result.sub and result.id_token_claims["aud"] == CLIENT_IDS["public"]


def _other_rsa() -> RSAKey:
    return RSAKey.generate_key(2048, {"alg": "RS256"}, auto_kid=True)


# name -> (forge from the genuine claims, what the refusal says)
FORGERIES: dict[str, tuple[Callable[[Forge, dict[str, Any]], str], str]] = {
    "alg-none": (
        lambda f, c: b64({"alg": "none", "typ": "JWT"}) + "." + b64(c) + ".",
        "UnsupportedAlgorithm",
    ),
    "hmac-with-public-key": (
        lambda f, c: jwt.encode(
            {"alg": "HS256", "kid": f.key.kid},
            c,
            OctKey.import_key(json.dumps(f.key.as_dict(private=False)).encode()),
            algorithms=["HS256"],
        ),
        "UnsupportedAlgorithm",
    ),
    "unknown-kid": (lambda f, c: f.signed(c, _other_rsa()), "a key the EHR does not publish"),
    "bad-signature": (lambda f, c: f.signed(c, _other_rsa(), kid=f.key.kid), "BadSignature"),
    "wrong-iss": (lambda f, c: f.signed({**c, "iss": "https://evil.example/fhir"}), "issuer"),
    "wrong-aud": (lambda f, c: f.signed({**c, "aud": "someone-else"}), "audience"),
    "aud-list-without-us": (lambda f, c: f.signed({**c, "aud": ["a", "b"]}), "audience"),
    "wrong-azp": (lambda f, c: f.signed({**c, "aud": [c["aud"], "b"], "azp": "b"}), "azp"),
    "wrong-nonce": (lambda f, c: f.signed({**c, "nonce": "not-the-one-we-sent"}), "nonce"),
    "no-nonce": (lambda f, c: f.signed({k: v for k, v in c.items() if k != "nonce"}), "nonce"),
    "expired": (
        lambda f, c: f.signed(
            {**c, "exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}
        ),
        "expired",
    ),
    "issued-in-future": (lambda f, c: f.signed({**c, "iat": int(time.time()) + 3600}), "iat"),
    "no-sub": (lambda f, c: f.signed({k: v for k, v in c.items() if k != "sub"}), "no sub"),
    "practitioner-fhir-user": (
        lambda f, c: f.signed({**c, "fhirUser": "Practitioner/123"}),
        "fhirUser",
    ),
    "garbage": (lambda f, c: "not.a.jwt", "DecodeError"),
}


@pytest.mark.parametrize("name", list(FORGERIES))
def test_forged_id_tokens_are_refused(
    name: str,
    factory,
    ehr: EhrServer,
    browser: Browser,
    smart: SmartSettings,
    forge: Forge,
    recorder: Recorder,
) -> None:
    make, reason = FORGERIES[name]
    forge.install(lambda claims, key: make(forge, claims))
    with pytest.raises(IdTokenError, match=reason):
        run_launch(factory, ehr, browser, smart)
    if name == "unknown-kid":
        # the JWKS is fetched again once (the EHR may have rotated), then the token refused
        assert 1 <= len(recorder.to("/auth/jwks")) <= 2


@pytest.mark.parametrize(
    "fhir_user", ["Patient/1", "RelatedPerson/2", "https://ehr.test/fhir/Person/3"]
)
def test_patient_facing_fhir_users_are_accepted(
    fhir_user: str, factory, ehr: EhrServer, browser: Browser, smart: SmartSettings, forge: Forge
) -> None:
    forge.install(lambda claims, key: forge.signed({**claims, "fhirUser": fhir_user}))
    assert run_launch(factory, ehr, browser, smart).fhir_user == fhir_user


def test_token_response_without_patient_or_scope_is_refused(
    factory,
    ehr: EhrServer,
    browser: Browser,
    smart: SmartSettings,
    forge: Forge,
    recorder: Recorder,
) -> None:
    for field in ("patient", "scope", "access_token"):

        def rewrite(
            request: httpx.Request, response: httpx.Response, drop: str = field
        ) -> httpx.Response:
            if not request.url.path.endswith("/auth/token"):
                return response
            return json_response(response, {k: v for k, v in response.json().items() if k != drop})

        recorder.rewrite = rewrite
        with pytest.raises(TokenError):
            run_launch(factory, ehr, browser, smart)


# --- mix-up between two EHRs -------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_ehr(instance_dir: Path, client_key: RSAKey) -> Iterator[LiveEhr]:
    live = start_live_ehr(instance_dir, "other", ("arron_schamberger",), client_key)
    yield live
    stop_live_ehr(live)


def test_state_for_one_ehr_with_a_code_from_another_is_refused(
    factory,
    ehr: EhrServer,
    browser: Browser,
    smart: SmartSettings,
    live_ehr: LiveEhr,
    other_ehr: LiveEhr,
    recorder: Recorder,
) -> None:
    ehr_b = register_ehr(factory, other_ehr, "public", smart)
    sign_in_at_ehr(live_ehr, browser)
    with httpx.Client(base_url=other_ehr.base_url) as http_b:
        browser_b = Browser(http_b, browser.binding)
        sign_in_at_ehr(other_ehr, browser_b, "arron_schamberger")
        with transaction(factory) as session:
            url_a = begin(
                session,
                ehr,
                redirect_uri=REDIRECT_URI,
                browser_binding=browser.binding,
                settings=smart,
            )
            url_b = begin(
                session,
                ehr_b,
                redirect_uri=REDIRECT_URI,
                browser_binding=browser.binding,
                settings=smart,
            )
        callback_a = consent_to(browser, url_a)
        callback_b = consent_to(browser_b, url_b)
    # The attacker's callback: EHR A's state, EHR B's code.
    with transaction(factory) as session, pytest.raises(TokenError):
        complete(
            session,
            state=callback_a["state"],
            code=callback_b["code"],
            browser_binding=browser.binding,
            redirect_uri=REDIRECT_URI,
            settings=smart,
        )
    # The code went only to A's token endpoint, which does not know it.
    assert [str(r.url) for r in recorder.to("/auth/token")] == [live_ehr.token_url]
    # B's code was never sent anywhere; B's own state still completes with it.
    with transaction(factory) as session:
        result = complete(
            session,
            state=callback_b["state"],
            code=callback_b["code"],
            browser_binding=browser.binding,
            redirect_uri=REDIRECT_URI,
            settings=smart,
        )
    assert result.ehr_id == ehr_b.id and result.patient == other_ehr.patient("arron_schamberger")


def test_id_token_of_another_issuer_is_refused(
    factory,
    ehr: EhrServer,
    browser: Browser,
    smart: SmartSettings,
    forge: Forge,
    other_ehr: LiveEhr,
) -> None:
    key_b: RSAKey = other_ehr.app.extensions["sandbox_signing_key"]
    forge.install(lambda claims, key: forge.signed({**claims, "iss": other_ehr.fhir_base}, key_b))
    with pytest.raises(IdTokenError):
        run_launch(factory, ehr, browser, smart)
