"""The sandbox's database: its own engine and tables, optionally in a PostgreSQL schema."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from portal.db import make_engine
from portal.extensions import Database
from portal.sandbox.models import SandboxBase

sdb = Database(url_key="DATABASE_URL", name="sandbox_db")

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def sandbox_engine(url: str, schema: str | None = None) -> Engine:
    """Engine with the sandbox tables created; `schema` keeps two EHRs apart in one PG database."""
    engine = make_engine(url)
    if schema and engine.dialect.name == "postgresql":
        if not _SCHEMA.match(schema):
            raise ValueError(f"invalid schema name: {schema!r}")
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        engine = engine.execution_options(schema_translate_map={None: schema})
    SandboxBase.metadata.create_all(engine)
    return engine
