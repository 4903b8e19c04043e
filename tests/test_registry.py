"""The EHR registry."""

from __future__ import annotations

import pytest
from flask import Flask

from portal.extensions import db
from portal.registry import RegistryError, find_ehr, upsert_ehr


def test_upsert_then_find_by_exact_base(app: Flask) -> None:
    with app.app_context():
        first = upsert_ehr(
            db.session, name="A", fhir_base="http://ehr.example/fhir/", client_id="portal"
        )
        again = upsert_ehr(
            db.session, name="A renamed", fhir_base="http://ehr.example/fhir", client_id="p2"
        )
        assert first.id == again.id
        assert again.name == "A renamed" and again.updated_at is not None
        assert find_ehr(db.session, "http://ehr.example/fhir") is again
        assert find_ehr(db.session, "http://ehr.example/fhir/") is again
        assert find_ehr(db.session, "http://ehr.example/fhir/other") is None
        assert find_ehr(db.session, "http://evil.example/fhir") is None
        assert find_ehr(db.session, "javascript:alert(1)") is None


@pytest.mark.parametrize(
    ("base", "client_type"),
    [
        ("ftp://ehr.example/fhir", "public"),
        ("ehr.example/fhir", "public"),
        ("http://ehr.example/fhir?x=1", "public"),
        ("http://ehr.example/fhir", "implicit"),
    ],
)
def test_bad_entries_are_refused(app: Flask, base: str, client_type: str) -> None:
    with app.app_context(), pytest.raises(RegistryError):
        upsert_ehr(db.session, name="X", fhir_base=base, client_id="c", client_type=client_type)
