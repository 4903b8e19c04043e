"""Keys for encryption at rest and the portal's signing key come from config, never the DB."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from flask import Flask

from portal.config import ConfigError
from portal.smart.crypto import TokenCipher, TokenKeyError, resolve_token_keys
from portal.smart.keys import load_client_key, public_jwks
from portal.smart.settings import client_jwks, current, init_app, settings_from_config


def test_development_generates_one_key_in_the_instance_folder(tmp_path: Path) -> None:
    first = resolve_token_keys({"ENV": "development"}, tmp_path)
    second = resolve_token_keys({}, tmp_path)
    assert first == second and len(first) == 1
    key_file = tmp_path / "token_key"
    assert key_file.read_text().strip() == first[0]
    assert key_file.stat().st_mode & 0o077 == 0
    assert [p.name for p in tmp_path.iterdir()] == ["token_key"]  # no temporary file left
    TokenCipher(first)  # a valid Fernet key


def test_production_refuses_to_start_without_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PORTAL_TOKEN_KEYS"):
        resolve_token_keys({"ENV": "production"}, tmp_path)
    assert not (tmp_path / "token_key").exists()
    with pytest.raises(ConfigError):
        settings_from_config({"ENV": "production", "TOKEN_KEYS": ""}, tmp_path)


def test_configured_keys_rotate(tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = TokenCipher(resolve_token_keys({"TOKEN_KEYS": old}, tmp_path))
    stored = before.encrypt("an-access-token")
    assert "an-access-token" not in stored
    after = TokenCipher(resolve_token_keys({"TOKEN_KEYS": f"{new}, {old}"}, tmp_path))
    assert after.decrypt(stored) == "an-access-token"  # the old key still decrypts
    rotated = after.rotate(stored)
    assert TokenCipher([new]).decrypt(rotated) == "an-access-token"  # now under the new key
    with pytest.raises(TokenKeyError):
        TokenCipher([new]).decrypt(stored)
    assert not (tmp_path / "token_key").exists()


@pytest.mark.parametrize("bad", ["not-a-key", "x" * 44])
def test_malformed_keys_are_a_config_error(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        settings_from_config({"TOKEN_KEYS": bad, "ENV": "production"}, tmp_path)


def test_client_key_is_generated_once_and_only_its_public_half_published(tmp_path: Path) -> None:
    key = load_client_key({}, tmp_path)
    again = load_client_key({}, tmp_path)
    assert key.kid == again.kid and key.is_private
    assert (tmp_path / "client_jwk.json").stat().st_mode & 0o077 == 0
    (published,) = public_jwks(key)["keys"]
    assert published["kid"] == key.kid and published["alg"] == "RS384"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(published)


def test_client_key_from_config(tmp_path: Path) -> None:
    import json

    key = load_client_key({}, tmp_path / "a")
    from_config = load_client_key({"CLIENT_JWK": json.dumps(key.as_dict(private=True))}, tmp_path)
    assert from_config.kid == key.kid
    with pytest.raises(ConfigError):
        load_client_key({"CLIENT_JWK": json.dumps(key.as_dict(private=False))}, tmp_path)


def test_init_app_hook(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(ENV="development")
    settings = init_app(app)
    with app.app_context():
        assert current() is settings
    assert app.extensions["smart"] is settings
    assert settings.cipher.decrypt(settings.cipher.encrypt("x")) == "x"
    (published,) = client_jwks(settings)["keys"]
    assert settings.client_key is not None and published["kid"] == settings.client_key.kid
    assert "d" not in published
