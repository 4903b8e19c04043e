"""Encryption at rest for tokens, PKCE verifiers and client secrets (Fernet, with key rotation).

Keys come from the configuration (`TOKEN_KEYS`, env PORTAL_TOKEN_KEYS: comma-separated Fernet
keys; the first encrypts, all decrypt), never from the database. In development one key is
generated into the instance folder on first use; production refuses to start without keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from portal.config import ConfigError

TOKEN_KEY_FILE = "token_key"  # noqa: S105  (a file name, not a secret)


class TokenKeyError(ValueError):
    """A stored value cannot be decrypted with any configured key."""


class TokenCipher:
    """Encrypts with the first key; decrypts with any of them."""

    def __init__(self, keys: Iterable[str | bytes]) -> None:
        fernets = []
        for key in keys:
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError) as exc:
                raise ConfigError(
                    "TOKEN_KEYS must be Fernet keys (32 url-safe base64-encoded bytes)"
                ) from exc
        if not fernets:
            raise ConfigError("at least one token key is required")
        self._fernet = MultiFernet(fernets)

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode("ascii")

    def decrypt(self, stored: str) -> str:
        try:
            return self._fernet.decrypt(stored.encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as exc:
            raise TokenKeyError(
                "stored secret cannot be decrypted with the configured keys"
            ) from exc

    def encrypt_optional(self, plain: str | None) -> str | None:
        return None if plain is None else self.encrypt(plain)

    def decrypt_optional(self, stored: str | None) -> str | None:
        return None if stored is None else self.decrypt(stored)

    def rotate(self, stored: str) -> str:
        """The same secret, encrypted with the current first key."""
        try:
            return self._fernet.rotate(stored.encode("ascii")).decode("ascii")
        except InvalidToken as exc:
            raise TokenKeyError(
                "stored secret cannot be decrypted with the configured keys"
            ) from exc


def digest(value: str) -> str:
    """SHA-256 hex digest: how states and browser bindings are stored (never the value)."""
    return hashlib.sha256(value.encode()).hexdigest()


def parse_keys(value: Any) -> list[str]:
    """`TOKEN_KEYS` as configured: a comma-separated string or a list."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(k).strip() for k in items if str(k).strip()]


def resolve_token_keys(config: Mapping[str, Any], instance_folder: Path) -> list[str]:
    """The configured keys; in development a generated one; in production a ConfigError."""
    keys = parse_keys(config.get("TOKEN_KEYS"))
    if keys:
        return keys
    if config.get("ENV") == "production":
        raise ConfigError(
            "PORTAL_TOKEN_KEYS must be set in production: comma-separated Fernet keys "
            "(generate one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')."
        )
    return [instance_key(instance_folder, TOKEN_KEY_FILE, Fernet.generate_key)]


def instance_key(folder: Path, name: str, generate: Any) -> str:
    """Read a generated key from the instance folder, creating it (mode 0600) on first use.

    Written to a temporary file and linked into place, so concurrent workers starting at
    once all end up with the one key that won.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if not path.exists():
        value = generate()
        text = value.decode() if isinstance(value, bytes) else str(value)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            with contextlib.suppress(FileExistsError):  # another worker won: use its key
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    return path.read_text().strip()
