"""The sandbox's database: its own engine and tables, optionally in a PostgreSQL schema."""

from __future__ import annotations

import logging
import re

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from portal.db import make_engine
from portal.extensions import Database
from portal.sandbox.models import SandboxBase

log = logging.getLogger(__name__)

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
    if _outdated(engine, schema):
        # The sandbox has no migrations: a store made by an older version is made anew, and
        # its demo patients are loaded again from the shipped bundles when the instance starts.
        log.warning("the sandbox store is from an older version of the sandbox: recreating it")
        SandboxBase.metadata.drop_all(engine)
        SandboxBase.metadata.create_all(engine)
    return engine


def _outdated(engine: Engine, schema: str | None) -> bool:
    """Whether a table lacks a column the models have (create_all adds tables, not columns)."""
    inspector = sa.inspect(engine)
    where = schema if schema and engine.dialect.name == "postgresql" else None
    for table in SandboxBase.metadata.sorted_tables:
        have = {column["name"] for column in inspector.get_columns(table.name, schema=where)}
        if not {column.name for column in table.columns} <= have:
            return True
    return False
