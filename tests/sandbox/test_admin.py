"""The fault controls need the instance's admin credential: nobody else on the demo's
network may switch faults on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask

from portal.sandbox.app import admin_password_file, create_sandbox_app
from portal.sandbox.db import sdb
from tests.sandbox.conftest import ADMIN, BASE_URL, admin_auth

FAULT = {"latency_ms": {"value": 1, "remaining": 5}}


@pytest.fixture
def admin_client(sandbox_app: Flask) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.WSGITransport(app=sandbox_app), base_url=BASE_URL) as c:
        yield c
        c.delete("/admin/faults", auth=ADMIN)


def active(client: httpx.Client) -> dict[str, object]:
    answer = client.get("/admin/faults", auth=ADMIN)
    assert answer.status_code == 200
    result: dict[str, object] = answer.json()["active"]
    return result


@pytest.mark.parametrize(
    "auth",
    [
        None,
        httpx.BasicAuth("admin", "guess"),
        httpx.BasicAuth("root", "admin-password-of-the-test-sandbox"),
    ],
    ids=["none", "wrong password", "wrong user"],
)
def test_without_the_credential_nothing_changes(
    admin_client: httpx.Client, auth: httpx.Auth | None
) -> None:
    for method in ("GET", "POST", "DELETE"):
        answer = admin_client.request(method, "/admin/faults", json=FAULT, auth=auth)
        assert answer.status_code == 401, method
        assert answer.headers["WWW-Authenticate"].startswith("Basic ")
    assert active(admin_client) == {}


def test_a_bearer_token_is_not_the_credential(admin_client: httpx.Client) -> None:
    answer = admin_client.post("/admin/faults", json=FAULT, headers={"Authorization": "Bearer x"})
    assert answer.status_code == 401
    assert active(admin_client) == {}


def test_with_the_credential_the_faults_change(admin_client: httpx.Client) -> None:
    assert admin_client.post("/admin/faults", json=FAULT, auth=ADMIN).status_code == 200
    assert active(admin_client) == {"latency_ms": {"value": 1, "remaining": 5}}
    assert admin_client.delete("/admin/faults", auth=ADMIN).status_code == 200
    assert active(admin_client) == {}


def test_the_password_is_generated_into_the_instance_folder(
    instance_dir: Path, tmp_path: Path
) -> None:
    def instance() -> Flask:
        return create_sandbox_app(
            {
                "SLUG": "admin-test",
                "DATABASE_URL": f"sqlite:///{tmp_path / 'admin-test.db'}",
                "FAULTS_ENABLED": True,
            }
        )

    app = instance()
    path = instance_dir / admin_password_file("admin-test")
    try:
        password = path.read_text().strip()
        assert app.config["ADMIN_PASSWORD"] == password and len(password) >= 32
        assert path.stat().st_mode & 0o077 == 0  # readable by the owner only
        again = instance()
        assert again.config["ADMIN_PASSWORD"] == password  # kept across restarts
        sdb.engine(again).dispose()
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE_URL) as c:
            assert c.get("/admin/faults").status_code == 401
            assert c.get("/admin/faults", auth=admin_auth(app)).status_code == 200
    finally:
        sdb.engine(app).dispose()
        path.unlink()


def test_disabled_fault_controls_are_not_there_even_for_the_admin(tmp_path: Path) -> None:
    app = create_sandbox_app(
        {
            "SLUG": "no-faults",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
            "ADMIN_PASSWORD": "p",
        }
    )
    try:
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE_URL) as c:
            assert c.get("/admin/faults", auth=httpx.BasicAuth("admin", "p")).status_code == 404
    finally:
        sdb.engine(app).dispose()
