"""Account operations. Passwords are hashed with argon2id (argon2-cffi)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import Account, PasswordReset

RESET_LIFETIME = timedelta(hours=1)
MIN_PASSWORD_LENGTH = 10
_hasher = PasswordHasher()
# Verified against when the email is unknown, so timing does not reveal which emails exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """A request that cannot be done; the message is safe to show."""


def normalise_email(email: str) -> str:
    return email.strip().lower()


def create_account(session: Session, email: str, password: str, display_name: str = "") -> Account:
    """A new account; the email must be free and the password long enough."""
    email = normalise_email(email)
    check_password(password)
    if session.scalar(sa.select(Account.id).where(Account.email == email)) is not None:
        raise AccountError("An account with this email already exists. Sign in instead.")
    account = Account(
        email=email, password_hash=_hasher.hash(password), display_name=display_name.strip()
    )
    session.add(account)
    session.flush()
    return account


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"Use at least {MIN_PASSWORD_LENGTH} characters for your password.")
    if len(password) > 1024:
        raise AccountError("That password is too long.")


def authenticate(session: Session, email: str, password: str) -> Account | None:
    """The account with these credentials, or None (same work whether or not the email exists)."""
    account = session.scalar(sa.select(Account).where(Account.email == normalise_email(email)))
    stored = account.password_hash if account and account.password_hash else None
    try:
        _hasher.verify(stored or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if account is None or stored is None:
        return None
    if _hasher.check_needs_rehash(stored):
        account.password_hash = _hasher.hash(password)
    return account


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_reset(session: Session, email: str) -> str | None:
    """A reset token for the account with this email, or None when there is none.

    The caller says the same thing either way, so the page reveals no accounts.
    """
    account = session.scalar(sa.select(Account).where(Account.email == normalise_email(email)))
    if account is None:
        return None
    token = secrets.token_urlsafe(32)
    session.add(
        PasswordReset(
            account_id=account.id, token_hash=_digest(token), expires_at=utcnow() + RESET_LIFETIME
        )
    )
    session.flush()
    return token


def reset_is_valid(session: Session, token: str) -> bool:
    return _live_reset(session, token) is not None


def complete_reset(session: Session, token: str, new_password: str) -> Account:
    """Set a new password with a single-use, unexpired reset token."""
    reset = _live_reset(session, token)
    if reset is None:
        raise AccountError("This reset link is invalid or has expired. Ask for a new one.")
    check_password(new_password)
    account = session.get(Account, reset.account_id)
    assert account is not None  # the foreign key guarantees it
    account.password_hash = _hasher.hash(new_password)
    # Every outstanding link of this account dies with the one used.
    session.execute(
        sa.update(PasswordReset)
        .where(PasswordReset.account_id == account.id, PasswordReset.used_at.is_(None))
        .values(used_at=utcnow())
    )
    session.flush()
    return account


def _live_reset(session: Session, token: str) -> PasswordReset | None:
    return session.scalar(
        sa.select(PasswordReset).where(
            PasswordReset.token_hash == _digest(token),
            PasswordReset.used_at.is_(None),
            PasswordReset.expires_at > utcnow(),
        )
    )


class EmailTaken(AccountError):
    """The email belongs to another account."""


def check_account_password(account: Account, password: str) -> bool:
    """Whether `password` is this account's (rehashing an old hash on success)."""
    if not account.password_hash:
        return False
    try:
        _hasher.verify(account.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    if _hasher.check_needs_rehash(account.password_hash):
        account.password_hash = _hasher.hash(password)
    return True


def change_password(session: Session, account: Account, current: str, new_password: str) -> None:
    """A new password, given the current one (the caller ends the account's other sessions)."""
    if not check_account_password(account, current):
        raise AccountError("That is not your current password.")
    check_password(new_password)
    account.password_hash = _hasher.hash(new_password)
    session.flush()


def set_first_password(session: Session, account: Account, email: str, password: str) -> None:
    """Email and password for an account an EHR launch made (it had neither)."""
    if account.password_hash:
        raise AccountError("This account has a password already.")
    email = normalise_email(email)
    check_password(password)
    taken = session.scalar(
        sa.select(Account.id).where(Account.email == email, Account.id != account.id)
    )
    if taken is not None:
        raise EmailTaken(
            "That email belongs to another account of the portal. Use another email, or sign "
            "in with that account."
        )
    account.email = email
    account.password_hash = _hasher.hash(password)
    session.flush()
