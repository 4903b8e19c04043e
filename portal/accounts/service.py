"""Account operations: sign-up by emailed link, sign-in, password reset.

Passwords are hashed with argon2id (portal.accounts.passwords).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.orm import Session

from portal.accounts import passwords
from portal.db import utcnow
from portal.models import Account, PasswordReset

RESET_LIFETIME = timedelta(hours=1)
SIGNUP_LIFETIME = timedelta(hours=1)
SIGNUP_INFO = b"portal.accounts.signup"
_now = time.time  # tests move it
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024


class AccountError(ValueError):
    """A request that cannot be done; the message is safe to show."""


def normalise_email(email: str) -> str:
    """The form an email is stored and looked up in."""
    return email.strip().lower()


def email_exists(session: Session, email: str) -> bool:
    """Whether an account has this email (for background work only: pages never say)."""
    found = session.scalar(sa.select(Account.id).where(Account.email == normalise_email(email)))
    return found is not None


def create_account(session: Session, email: str, password: str, display_name: str = "") -> Account:
    """A new account; the email must be free and the password long enough."""
    check_password(password)
    return _add_account(session, email, passwords.hash_password(password), display_name)


def _add_account(session: Session, email: str, password_hash: str, display_name: str) -> Account:
    email = normalise_email(email)
    if email_exists(session, email):
        raise AccountError("An account with this email already exists. Sign in instead.")
    account = Account(email=email, password_hash=password_hash, display_name=display_name.strip())
    session.add(account)
    session.flush()
    return account


def check_password(password: str) -> None:
    """Refuse a password that is too short, too long or one of the common ones."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"Use at least {MIN_PASSWORD_LENGTH} characters for your password.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError("That password is too long.")
    if passwords.is_common(password):
        raise AccountError(passwords.TOO_COMMON)


# Sign-up. A pending sign-up lives only in the signed, expiring token of the link mailed to the
# address: the schema has no column for an unconfirmed account and this change adds no
# migration, and a token keeps the database free of sign-ups nobody confirms. It carries the
# email, the name and the argon2 hash of the password (never the password itself); it is
# signed, not encrypted, so whoever holds the link can read the hash, which is why only the
# mailbox owner gets it. Confirming creates the account if the email is still free.


@dataclass(frozen=True)
class PendingSignup:
    """A sign-up waiting for its email to be confirmed."""

    email: str
    display_name: str
    password_hash: str


def _signups(secret_key: str) -> Fernet:
    """Sign-up links are encrypted, not only signed: the link travels by mail and lands in
    browser histories, and must not show the email or the password's hash (Fernet: AES with an
    HMAC and a timestamp, from a key of its own derived from SECRET_KEY)."""
    hkdf = HKDF(algorithm=SHA256(), length=32, salt=None, info=SIGNUP_INFO)
    return Fernet(base64.urlsafe_b64encode(hkdf.derive(secret_key.encode())))


def start_signup(secret_key: str, email: str, password: str, display_name: str = "") -> str:
    """The token for the confirmation link: checks the password, hashes it, stores nothing.

    The same work is done whether or not the email already has an account: the caller sends
    the mail (confirmation, or a note to the owner) off the request path.
    """
    check_password(password)
    payload = {
        "email": normalise_email(email),
        "name": display_name.strip(),
        "hash": passwords.hash_password(password),
    }
    data = json.dumps(payload, separators=(",", ":")).encode()
    return _signups(secret_key).encrypt_at_time(data, int(_now())).decode()


def read_signup(secret_key: str, token: str) -> PendingSignup | None:
    """The sign-up a confirmation token carries, or None if it is forged, altered or expired."""
    lifetime = int(SIGNUP_LIFETIME.total_seconds())
    try:
        data = json.loads(_signups(secret_key).decrypt_at_time(token, lifetime, int(_now())))
    except (InvalidToken, ValueError):
        return None
    try:
        return PendingSignup(str(data["email"]), str(data["name"]), str(data["hash"]))
    except (KeyError, TypeError):
        return None


def complete_signup(session: Session, pending: PendingSignup) -> Account:
    """Create the confirmed account (refused if the email was taken meanwhile)."""
    return _add_account(session, pending.email, pending.password_hash, pending.display_name)


def authenticate(session: Session, email: str, password: str) -> Account | None:
    """The account with these credentials, or None (same work whether or not the email exists)."""
    account = session.scalar(sa.select(Account).where(Account.email == normalise_email(email)))
    stored = account.password_hash if account and account.password_hash else None
    if not passwords.verify(stored, password) or account is None or stored is None:
        return None
    if passwords.needs_rehash(stored):
        account.password_hash = passwords.hash_password(password)
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
    """Whether this reset token can still be used."""
    return _live_reset(session, token) is not None


def complete_reset(session: Session, token: str, new_password: str) -> Account:
    """Set a new password with a single-use, unexpired reset token."""
    reset = _live_reset(session, token)
    if reset is None:
        raise AccountError("This reset link is invalid or has expired. Ask for a new one.")
    check_password(new_password)
    account = session.get(Account, reset.account_id)
    assert account is not None  # the foreign key guarantees it
    account.password_hash = passwords.hash_password(new_password)
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


class WrongPassword(AccountError):
    """The password given as the account's current one is not."""


class EmailTaken(AccountError):
    """The email belongs to another account."""


def check_account_password(account: Account, password: str) -> bool:
    """Whether `password` is this account's (rehashing an old hash on success)."""
    if not account.password_hash or not passwords.verify(account.password_hash, password):
        return False
    if passwords.needs_rehash(account.password_hash):
        account.password_hash = passwords.hash_password(password)
    return True


def change_password(session: Session, account: Account, current: str, new_password: str) -> None:
    """A new password, given the current one (the caller ends the account's other sessions)."""
    if not check_account_password(account, current):
        raise WrongPassword("That is not your current password.")
    check_password(new_password)
    account.password_hash = passwords.hash_password(new_password)
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
    account.password_hash = passwords.hash_password(password)
    session.flush()
