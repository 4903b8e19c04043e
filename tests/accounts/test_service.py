"""Account operations: argon2 hashes, no enumeration, single-use expiring reset tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask

from portal.accounts import service
from portal.db import utcnow
from portal.extensions import db
from portal.models import PasswordReset


def test_password_is_stored_as_argon2id(app: Flask) -> None:
    with app.app_context():
        account = service.create_account(db.session, " Ana@Example.org ", "correct horse battery")
        assert account.email == "ana@example.org"
        assert account.password_hash and account.password_hash.startswith("$argon2id$")
        assert "correct horse" not in account.password_hash


def test_authenticate(app: Flask) -> None:
    with app.app_context():
        service.create_account(db.session, "ana@example.org", "correct horse battery")
        assert service.authenticate(db.session, "ANA@example.org", "correct horse battery")
        assert service.authenticate(db.session, "ana@example.org", "wrong password!") is None
        assert service.authenticate(db.session, "nobody@example.org", "whatever12345") is None


def test_duplicate_email_and_short_password_refused(app: Flask) -> None:
    with app.app_context():
        service.create_account(db.session, "ana@example.org", "correct horse battery")
        with pytest.raises(service.AccountError, match="already exists"):
            service.create_account(db.session, "ana@example.org", "another long password")
        with pytest.raises(service.AccountError, match="at least"):
            service.create_account(db.session, "bo@example.org", "short")


def test_reset_token_is_single_use(app: Flask) -> None:
    with app.app_context():
        service.create_account(db.session, "ana@example.org", "correct horse battery")
        token = service.start_reset(db.session, "ana@example.org")
        assert token is not None
        stored = db.session.scalars(sa.select(PasswordReset.token_hash)).all()
        assert token not in stored  # only its digest is kept
        service.complete_reset(db.session, token, "a brand new password")
        assert service.authenticate(db.session, "ana@example.org", "a brand new password")
        with pytest.raises(service.AccountError, match="invalid or has expired"):
            service.complete_reset(db.session, token, "yet another password")


def test_reset_token_expires_and_unknown_email_gives_none(app: Flask) -> None:
    with app.app_context():
        service.create_account(db.session, "ana@example.org", "correct horse battery")
        assert service.start_reset(db.session, "nobody@example.org") is None
        token = service.start_reset(db.session, "ana@example.org")
        assert token
        reset = db.session.scalars(sa.select(PasswordReset)).one()
        reset.expires_at = utcnow() - timedelta(seconds=1)
        db.session.flush()
        assert not service.reset_is_valid(db.session, token)
