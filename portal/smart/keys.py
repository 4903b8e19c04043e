"""The portal's own signing key (confidential-asymmetric clients) and its published JWKS.

The private key is a JWK from the configuration (`CLIENT_JWK`, env PORTAL_CLIENT_JWK), or
one generated once into the instance folder (mode 0600). Only the public half is published.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from joserfc.jwk import RSAKey

from portal.config import ConfigError
from portal.smart.crypto import instance_key

CLIENT_KEY_FILE = "client_jwk.json"
ASSERTION_ALG = "RS384"


def _generate() -> str:
    key = RSAKey.generate_key(2048, {"alg": ASSERTION_ALG, "use": "sig"}, auto_kid=True)
    return json.dumps(key.as_dict(private=True))


def load_client_key(config: Mapping[str, Any], instance_folder: Path) -> RSAKey:
    """The portal's private RSA key: from CLIENT_JWK, else generated in the instance folder."""
    raw: Any = config.get("CLIENT_JWK") or instance_key(instance_folder, CLIENT_KEY_FILE, _generate)
    try:
        data = json.loads(raw) if isinstance(raw, str) else dict(raw)
        key = RSAKey.import_key(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError("CLIENT_JWK must be an RSA private key in JWK (JSON) form") from exc
    if not key.is_private:
        raise ConfigError("CLIENT_JWK must include the private key")
    if not key.kid:
        key.ensure_kid()
    return key


def public_jwks(key: RSAKey) -> dict[str, Any]:
    """The JWKS to publish (and register with confidential-asymmetric EHRs): public half only."""
    public: dict[str, Any] = dict(key.as_dict(private=False))
    public.setdefault("alg", ASSERTION_ALG)
    public.setdefault("use", "sig")
    public["kid"] = key.kid
    return {"keys": [public]}
