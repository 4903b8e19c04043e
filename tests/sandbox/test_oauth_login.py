"""Patients' login, logout, demo accounts, and registering apps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from flask import Flask
from joserfc.jwk import OctKey, RSAKey

from portal.db import transaction
from portal.sandbox import accounts
from portal.sandbox.app import create_sandbox_app
from portal.sandbox.db import sdb
from portal.sandbox.fhir.store import load_bundle, read_bundle_file
from portal.sandbox.models import Client, PatientUser, secret_hash
from tests.sandbox.conftest import BASE_URL, DATA, sandbox_database
from tests.sandbox.flows import (
    AUTHORIZE,
    Login,
    db,
    form_with,
    forms,
    login,
    patient_login,
)


@pytest.fixture
def who(sandbox_app: Flask, loaded) -> Login:
    return patient_login(sandbox_app, loaded["raeann_okon"].patient_id)


def test_demo_accounts_are_listed_and_escaped(http: httpx.Client, who: Login) -> None:
    page = http.get("/auth/login")
    assert page.status_code == 200
    assert "Raeann O&#39;Kon" in page.text
    assert "Raeann O'Kon" not in page.text
    assert f"<code>{who.username}</code>" in page.text
    assert f"<code>{who.password}</code>" in page.text
    assert who.password == f"{who.username}-demo"
    # One-click sign-in forms, one per demo account.
    buttons = [f for f in forms(page.text) if ("username", who.username) in f.fields]
    assert buttons and ("password", who.password) in buttons[0].fields


def test_no_accounts_listed_outside_demo_mode(
    sandbox_app: Flask, http: httpx.Client, who: Login, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sandbox_app.config, "DEMO", False)
    page = http.get("/auth/login")
    assert who.password not in page.text
    assert "Demo accounts" not in page.text


def test_login_and_logout(http: httpx.Client, who: Login) -> None:
    answer = login(http, who)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    page = http.get("/auth/login")
    assert "You are signed in as Raeann O&#39;Kon" in page.text
    logout = form_with(http.get("/auth/login").text, "username")  # any page with a csrf token
    answer = http.post("/auth/logout", data={"csrf_token": dict(logout.fields)["csrf_token"]})
    assert answer.status_code == 303
    assert "You are signed in" not in http.get("/auth/login").text


@pytest.mark.parametrize("case", ["wrong password", "unknown user"])
def test_wrong_credentials_give_one_clear_error(http: httpx.Client, who: Login, case: str) -> None:
    form = form_with(http.get("/auth/login").text, "password")
    if case == "wrong password":
        data = form.data(username=who.username, password="nope")
    else:
        data = form.data(username="nobody-here", password=who.password)
    answer = http.post("/auth/login", data=data)
    assert answer.status_code == 401
    assert "Wrong username or password." in answer.text
    assert "location" not in answer.headers
    assert "You are signed in" not in http.get("/auth/login").text


def test_login_needs_the_csrf_token(http: httpx.Client, who: Login) -> None:
    http.get("/auth/login")
    answer = http.post("/auth/login", data={"username": who.username, "password": who.password})
    assert answer.status_code == 400
    assert "You are signed in" not in http.get("/auth/login").text


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.test/",
        "//evil.test/path",
        "/\\evil.test",
        "\\\\evil.test",
        "javascript:alert(1)",
        "http:evil.test",
        "/auth/login\r\nLocation: https://evil.test",
        "evil.test",
    ],
)
def test_next_is_a_local_path_only(http: httpx.Client, who: Login, target: str) -> None:
    page = http.get("/auth/login", params={"next": target})
    assert "evil" not in "".join(v for f in forms(page.text) for _, v in f.fields)
    form = form_with(page.text, "password")
    data = form.data(username=who.username, password=who.password, next=target)
    answer = http.post("/auth/login", data=data)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"


def test_next_to_a_local_path_is_followed(http: httpx.Client, who: Login) -> None:
    target = "/auth/authorize?client_id=x&state=y"
    assert login(http, who, target).headers["location"] == target
    assert AUTHORIZE.endswith("/auth/authorize")


def test_passwords_are_argon2_hashes(sandbox_app: Flask, who: Login) -> None:
    with db(sandbox_app) as session:
        user = session.get(PatientUser, who.user_id)
        assert user is not None
        assert user.password_hash.startswith("$argon2id$")
        assert who.password not in user.password_hash
        assert accounts.authenticate(session, who.username, who.password) is user
        assert accounts.authenticate(session, who.username, who.password + "x") is None
        assert accounts.authenticate(session, "nobody-here", who.password) is None


# --- accounts in a store of their own ------------------------------------------------------------


@pytest.fixture(scope="module")
def store(instance_dir: Path) -> Iterator[Flask]:
    url, schema = sandbox_database("accounts", instance_dir)
    app = create_sandbox_app(
        {
            "TESTING": True,
            "SLUG": "accounts",
            "BASE_URL": BASE_URL,
            "DATABASE_URL": url,
            "DB_SCHEMA": schema,
        }
    )
    with transaction(sdb.sessionmaker(app)) as session:
        for name in ("arron_schamberger", "raeann_okon"):
            load_bundle(session, read_bundle_file(DATA / f"{name}.json.gz"))
    yield app
    sdb.engine(app).dispose()


def arron_twin() -> dict:
    return {
        "resourceType": "Patient",
        "id": "twin-1",
        "name": [{"family": "X", "given": ["Árrön"]}],
    }


def test_create_demo_users(store: Flask) -> None:
    with transaction(sdb.sessionmaker(store)) as session:
        created = accounts.create_demo_users(session)
        assert sorted(u.username for u in created) == ["arron", "raeann"]
        assert {u.display_name for u in created} == {"Arron Schamberger", "Raeann O'Kon"}
        for user in created:
            assert user.demo_password == f"{user.username}-demo"
            assert accounts.authenticate(session, user.username, user.demo_password) is user
        assert accounts.create_demo_users(session) == []  # everyone has a login now
        # A taken username gets a digit; accents fold to ASCII letters.
        assert accounts.demo_username(session, arron_twin()) == "arron2"
        assert [u.username for u in accounts.demo_accounts(session)] == ["arron", "raeann"]


def test_ensure_patient_user(store: Flask) -> None:
    factory = sdb.sessionmaker(store)
    session = factory()
    try:
        user = accounts.ensure_patient_user(session, arron_twin(), "twin", "pw-1", demo=False)
        assert user.demo_password is None
        assert user.display_name == "Árrön X"
        again = accounts.ensure_patient_user(session, arron_twin(), "twin", "pw-2", demo=True)
        assert again is user and again.demo_password == "pw-2"
        assert accounts.authenticate(session, "twin", "pw-2") is user
        assert accounts.authenticate(session, "twin", "pw-1") is None
        with pytest.raises(ValueError, match="another patient"):
            other = {**arron_twin(), "id": "twin-2"}
            accounts.ensure_patient_user(session, other, "twin", "pw")
        with pytest.raises(ValueError):
            accounts.ensure_patient_user(session, {"resourceType": "Observation"}, "x", "y")
    finally:
        session.rollback()
        session.close()


def test_register_client(store: Flask) -> None:
    factory = sdb.sessionmaker(store)
    session = factory()
    key = RSAKey.generate_key(2048, {"alg": "RS384"}, auto_kid=True)
    try:
        client = accounts.register_client(
            session,
            client_id="app-1",
            name="First",
            client_type="confidential-symmetric",
            redirect_uris=["https://app.test/cb"],
            secret="s3cret-value",
        )
        assert client.secret_hash == secret_hash("s3cret-value")
        assert client.check_client_secret("s3cret-value")
        assert "openid" in client.allowed_scope.split()  # a default scope
        # Upsert: same id, new details; the secret is kept when not given again.
        again = accounts.register_client(
            session,
            client_id="app-1",
            name="Renamed",
            client_type="confidential-symmetric",
            redirect_uris=["https://app.test/cb2"],
            launch_url="https://app.test/launch",
            scope="launch patient/*.rs",
        )
        assert again is client and client.name == "Renamed"
        assert client.check_client_secret("s3cret-value")
        assert client.allowed_scope == "launch patient/*.rs"
        assert session.scalar(sa.select(sa.func.count()).select_from(Client)) >= 1

        asym = accounts.register_client(
            session,
            client_id="app-2",
            name="Keys",
            client_type="confidential-asymmetric",
            redirect_uris=["https://app.test/cb"],
            jwks={"keys": [key.as_dict(private=True)]},
        )
        assert asym.jwks is not None
        assert "d" not in asym.jwks["keys"][0]  # only the public half is kept
        assert asym.token_endpoint_auth_method == "client_assertion_jwt"

        bad = [
            {"client_type": "public", "secret": "x"},
            {"client_type": "confidential-symmetric"},
            {"client_type": "confidential-asymmetric"},
            {"client_type": "confidential-asymmetric", "jwks": {"keys": []}},
            {
                "client_type": "confidential-asymmetric",
                "jwks": {"keys": [OctKey.generate_key(256).as_dict(private=True)]},
            },
            {"client_type": "public", "jwks": {"keys": [key.as_dict(private=False)]}},
            {"client_type": "magic"},
            {"client_type": "public", "redirect_uris": []},
            {"client_type": "public", "redirect_uris": ["/relative"]},
            {"client_type": "public", "redirect_uris": ["https://app.test/cb#frag"]},
        ]
        for i, kwargs in enumerate(bad):
            params = {"redirect_uris": ["https://app.test/cb"], **kwargs}
            with pytest.raises(ValueError):
                accounts.register_client(session, client_id=f"bad-{i}", name="Bad", **params)
    finally:
        session.rollback()
        session.close()
