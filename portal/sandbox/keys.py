"""The sandbox's id_token signing key, generated once and kept in the instance folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from joserfc.jwk import RSAKey


def load_signing_key(path: Path) -> RSAKey:
    """Load the RSA private key (JWK) at `path`, creating it (mode 0600) the first time."""
    if path.exists():
        return RSAKey.import_key(json.loads(path.read_text()))
    key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(key.as_dict(private=True), fh)
    return key


def public_jwks(key: RSAKey) -> dict[str, Any]:
    """The JWKS published at jwks_uri."""
    return {"keys": [key.as_dict(private=False)]}
