"""Configuration: defaults, environment overrides, secret handling."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from portal.app import create_app
from portal.config import ConfigError, is_strong_secret
from portal.extensions import db

STRONG = "k3y-" + "aZ9x8Yb7Wc6Vd5Ue4Tf3Sg2Rh1Qi0Pj" * 2
MAIL = {"MAIL_BACKEND": "smtp", "MAIL_SMTP_HOST": "mx.example.org", "MAIL_FROM": "p@example.org"}


def test_development_key_is_generated_once_and_kept(instance_dir: Path) -> None:
    first = create_app({"DATABASE_URL": "sqlite://"}).config["SECRET_KEY"]
    second = create_app({"DATABASE_URL": "sqlite://"}).config["SECRET_KEY"]
    assert first == second
    assert is_strong_secret(first)
    key_file = instance_dir / "secret_key"
    assert key_file.read_text().strip() == first
    assert key_file.stat().st_mode & 0o077 == 0  # readable by the owner only


@pytest.mark.parametrize("key", [None, "", "dev", "short-key", "a" * 64, "changeme" * 5])
def test_production_refuses_missing_or_weak_key(key: str | None) -> None:
    with pytest.raises(ConfigError):
        create_app({"ENV": "production", "SECRET_KEY": key, "DATABASE_URL": "sqlite://"})


def test_production_accepts_strong_key_and_secures_cookies() -> None:
    app = create_app(
        {
            "ENV": "production",
            "SECRET_KEY": STRONG,
            "DATABASE_URL": "sqlite://",
            "TOKEN_KEYS": Fernet.generate_key().decode(),
            **MAIL,
        }
    )
    assert app.config["SECRET_KEY"] == STRONG
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_DATABASE_URL", "sqlite:///from-env.db")
    monkeypatch.setenv("PORTAL_PUBLIC_URL", "https://portal.example.org")
    app = create_app()
    assert app.config["DATABASE_URL"] == "sqlite:///from-env.db"
    assert app.config["PUBLIC_URL"] == "https://portal.example.org"


def test_instance_config_file_is_read(instance_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (instance_dir / "config.py").write_text('PUBLIC_URL = "https://from-instance.example"\n')
    try:
        assert create_app().config["PUBLIC_URL"] == "https://from-instance.example"
        monkeypatch.setenv("PORTAL_PUBLIC_URL", "https://env-wins.example")
        assert create_app().config["PUBLIC_URL"] == "https://env-wins.example"
    finally:
        (instance_dir / "config.py").unlink()


def test_default_database_is_sqlite_in_instance(instance_dir: Path) -> None:
    app = create_app()
    assert app.config["DATABASE_URL"] == f"sqlite:///{instance_dir / 'portal.db'}"


def test_production_refuses_to_start_without_token_keys() -> None:
    with pytest.raises(ConfigError, match="TOKEN_KEYS"):
        create_app({"ENV": "production", "SECRET_KEY": STRONG, "DATABASE_URL": "sqlite://", **MAIL})


@pytest.mark.parametrize(
    ("mail", "message"),
    [
        ({}, "must send mail"),  # the console backend: links printed, never delivered
        ({"MAIL_BACKEND": "outbox"}, "must send mail"),
        ({"MAIL_BACKEND": "smtp"}, "MAIL_SMTP_HOST and PORTAL_MAIL_FROM must be set"),
        ({**MAIL, "MAIL_FROM": None}, "MAIL_SMTP_HOST and PORTAL_MAIL_FROM must be set"),
        (
            {**MAIL, "MAIL_SMTP_USER": "portal", "MAIL_SMTP_STARTTLS": False},
            "password would otherwise travel unencrypted",
        ),
    ],
)
def test_production_refuses_to_start_without_a_real_mail_transport(
    mail: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        create_app(
            {
                "ENV": "production",
                "SECRET_KEY": STRONG,
                "DATABASE_URL": "sqlite://",
                "TOKEN_KEYS": Fernet.generate_key().decode(),
                **mail,
            }
        )


def test_unknown_mail_backend_is_refused() -> None:
    with pytest.raises(ConfigError, match="MAIL_BACKEND must be console, outbox or smtp"):
        create_app({"DATABASE_URL": "sqlite://", "MAIL_BACKEND": "pigeon"})


def test_cross_site_iframe_cookie_is_secure(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setenv("PORTAL_SESSION_COOKIE_SAMESITE", "None")
    app = create_app({"DATABASE_URL": database_url})
    assert app.config["SESSION_COOKIE_SAMESITE"] == "None"
    assert app.config["SESSION_COOKIE_SECURE"] is True

    @app.get("/touch")
    def touch() -> str:
        from flask import session

        session["x"] = 1
        return "ok"

    cookie = app.test_client().get("/touch").headers["Set-Cookie"]
    assert "SameSite=None" in cookie and "Secure" in cookie and "HttpOnly" in cookie
    db.engine(app).dispose()


def test_unknown_samesite_value_is_refused() -> None:
    with pytest.raises(ConfigError, match="SAMESITE"):
        create_app({"DATABASE_URL": "sqlite://", "SESSION_COOKIE_SAMESITE": "Loose"})
