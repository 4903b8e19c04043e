"""The `portal` command's registry management and the published JWKS."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal.cli import main
from portal.extensions import db
from portal.models import EhrServer


def test_ehr_add_stores_the_secret_encrypted(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EHR_SECRET", "s3cret-value-for-this-clinic")
    result = app.test_cli_runner().invoke(
        main,
        args=[
            "ehr",
            "add",
            "--name",
            "Clinic",
            "--fhir-base",
            "https://ehr.example/fhir",
            "--client-id",
            "portal",
            "--client-type",
            "confidential-symmetric",
            "--client-secret-env",
            "EHR_SECRET",
        ],
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        ehr = db.session.scalars(sa.select(EhrServer)).one()
        assert ehr.client_type == "confidential-symmetric"
        assert ehr.client_secret_enc and "s3cret" not in ehr.client_secret_enc
        assert app.extensions["smart"].cipher.decrypt(ehr.client_secret_enc) == (
            "s3cret-value-for-this-clinic"
        )


def test_ehr_add_refuses_a_symmetric_client_without_secret(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        main,
        args=[
            "ehr",
            "add",
            "--name",
            "Clinic",
            "--fhir-base",
            "https://ehr.example/fhir",
            "--client-id",
            "portal",
            "--client-type",
            "confidential-symmetric",
        ],
    )
    assert result.exit_code != 0
    assert "needs --client-secret-env" in result.output


def test_ehr_add_refuses_a_bad_url(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        main, args=["ehr", "add", "--name", "X", "--fhir-base", "ftp://x", "--client-id", "p"]
    )
    assert result.exit_code != 0 and "not an http(s) URL" in result.output


def test_published_jwks_has_only_public_keys(client: FlaskClient) -> None:
    keys = client.get("/.well-known/jwks.json").json["keys"]
    assert keys, "the portal publishes its key for private_key_jwt"
    for key in keys:
        assert key["kty"] in ("RSA", "EC") and key.get("kid")
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)
