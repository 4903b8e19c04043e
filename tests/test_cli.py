"""The `portal` command's registry management and the published JWKS."""

from __future__ import annotations

import json
from pathlib import Path

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
    assert "needs client_secret_env" in result.output


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


def test_ehr_load_registers_a_file_all_or_nothing(
    app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKE_SECRET", "lake-secret-0123456789")
    good = [
        {"name": "River", "fhir_base": "https://river.example/fhir", "client_id": "p1"},
        {
            "name": "Lake",
            "fhir_base": "https://lake.example/fhir",
            "client_id": "p2",
            "client_type": "confidential-symmetric",
            "client_secret_env": "LAKE_SECRET",
        },
    ]
    bad = [*good, {"name": "Broken", "fhir_base": "ftp://x", "client_id": "p3"}]
    runner = app.test_cli_runner()
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    failed = runner.invoke(main, args=["ehr", "load", str(tmp_path / "bad.json")])
    assert failed.exit_code != 0 and "entry 3: not an http(s) URL" in failed.output
    with app.app_context():
        assert db.session.scalars(sa.select(EhrServer)).all() == []
    (tmp_path / "good.json").write_text(json.dumps(good))
    assert runner.invoke(main, args=["ehr", "load", str(tmp_path / "good.json")]).exit_code == 0
    listed = runner.invoke(main, args=["ehr", "list"]).output
    assert "River\thttps://river.example/fhir" in listed
    assert "Lake\thttps://lake.example/fhir\tp2\tconfidential-symmetric" in listed
    (tmp_path / "junk.json").write_text("{not json")
    junk = runner.invoke(main, args=["ehr", "load", str(tmp_path / "junk.json")])
    assert junk.exit_code != 0 and "not valid JSON" in junk.output
    (tmp_path / "typo.json").write_text(json.dumps([{**good[0], "clientid": "x"}]))
    typo = runner.invoke(main, args=["ehr", "load", str(tmp_path / "typo.json")])
    assert typo.exit_code != 0 and "unknown keys: clientid" in typo.output
