"""records: the visit each one was made at, as an indexed column (a visit's page finds its
results, diagnoses and prescriptions by index instead of reading JSON)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# The stored records' `encounter.reference`, as `portal.phr.classify` gives it to new ones.
BACKFILL = {
    "sqlite": (
        "UPDATE fhir_record SET encounter_ref = json_extract(raw, '$.encounter.reference') "
        "WHERE json_type(raw, '$.encounter.reference') = 'text' "
        "AND length(json_extract(raw, '$.encounter.reference')) <= 255"
    ),
    "postgresql": (
        "UPDATE fhir_record SET encounter_ref = raw->'encounter'->>'reference' "
        "WHERE jsonb_typeof(raw->'encounter'->'reference') = 'string' "
        "AND length(raw->'encounter'->>'reference') <= 255"
    ),
}


def upgrade() -> None:
    with op.batch_alter_table("fhir_record") as batch:
        batch.add_column(sa.Column("encounter_ref", sa.String(length=255), nullable=True))
        batch.create_index(
            "ix_fhir_record_encounter", ["connection_id", "encounter_ref"], unique=False
        )
    op.execute(BACKFILL[op.get_bind().dialect.name])


def downgrade() -> None:
    with op.batch_alter_table("fhir_record") as batch:
        batch.drop_index("ix_fhir_record_encounter")
        batch.drop_column("encounter_ref")
