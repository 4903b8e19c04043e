"""Alembic migrations match the models and go down and up cleanly."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from portal.db import Base
from portal.migrate import downgrade, upgrade


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
