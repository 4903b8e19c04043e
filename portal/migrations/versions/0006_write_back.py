"""the patient's entries sent to their clinics

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from portal.db import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "write_back",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("server_id", sa.String(length=64), nullable=True),
        sa.Column("version_sent", sa.String(length=64), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["fhir_record.id"],
            name=op.f("fk_write_back_record_id_fhir_record"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["ehr_connection.id"],
            name=op.f("fk_write_back_connection_id_ehr_connection"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_write_back")),
        sa.UniqueConstraint("record_id", "connection_id", name=op.f("uq_write_back_record_id")),
    )
    op.create_index("ix_write_back_state_next", "write_back", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_write_back_state_next", table_name="write_back")
    op.drop_table("write_back")
