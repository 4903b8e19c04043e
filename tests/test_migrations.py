"""Alembic migrations match the models and go down and up cleanly."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask

from portal.db import Base
from portal.extensions import db
from portal.migrate import downgrade, upgrade
from portal.models import FhirRecord, WriteBack
from tests.phr import factories as f


def test_models_and_migrations_agree(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    try:
        downgrade(engine, "base")
        assert "ehr_server" not in sa.inspect(engine).get_table_names()
        upgrade(engine)
        assert "ehr_server" in sa.inspect(engine).get_table_names()
    finally:
        upgrade(engine)
        engine.dispose()


def test_records_stored_before_0011_get_the_visit_they_were_made_at(app: Flask) -> None:
    """The upgrade fills `encounter_ref` of records already stored, as new ones get it."""
    with app.app_context():
        account = f.make_account(db.session)
        clinic = f.make_connection(db.session, account)
        result = {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"text": "Weight"},
            "encounter": {"reference": "Encounter/e1"},
        }
        f.add_resources(db.session, clinic, [result, {**result, "id": "o2", "encounter": {}}])
        record_id = db.session.scalar(
            sa.select(FhirRecord.id).where(FhirRecord.resource_id == "o1")
        )
        assert record_id is not None
        db.session.add(WriteBack(record_id=record_id, connection_id=clinic.id, state="sent"))
        db.session.commit()
        db.session.close()
    engine = db.engine(app)
    engine.dispose()
    try:
        downgrade(engine, "0010")
        assert "encounter_ref" not in {
            c["name"] for c in sa.inspect(engine).get_columns("fhir_record")
        }
    finally:
        upgrade(engine)
    with engine.connect() as conn:
        found = dict(
            conn.execute(sa.text("SELECT resource_id, encounter_ref FROM fhir_record")).all()
        )
    assert found == {"o1": "Encounter/e1", "o2": None}
    # SQLite copies a table to alter it: nothing that references it went with the old copy.
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT state FROM write_back")).scalars().all() == ["sent"]


def test_a_write_back_state_outside_the_known_ones_is_refused(app: Flask) -> None:
    """The migrated schema holds the model's CHECK constraint (states are typed)."""
    with app.app_context():
        account = f.make_account(db.session)
        clinic = f.make_connection(db.session, account)
        f.add_resources(
            db.session, clinic, [{"resourceType": "Observation", "id": "o1", "status": "final"}]
        )
        db.session.commit()
        record_id = db.session.scalar(sa.select(FhirRecord.id))
        insert = sa.text(
            "INSERT INTO write_back (record_id, connection_id, state, attempts, created_at) "
            "VALUES (:r, :c, :s, 0, CURRENT_TIMESTAMP)"
        )
        db.session.execute(insert, {"r": record_id, "c": clinic.id, "s": "sent"})
        db.session.rollback()
        with pytest.raises(sa.exc.IntegrityError):
            db.session.execute(insert, {"r": record_id, "c": clinic.id, "s": "lost"})
        db.session.rollback()
