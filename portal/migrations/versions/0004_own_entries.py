"""the patient's own entries: a "self" source per person and entry revisions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from portal.db import JSONType, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ehr_connection") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=10), nullable=False, server_default="ehr")
        )
        batch.alter_column("ehr_server_id", existing_type=sa.Integer(), nullable=True)
    op.create_index(
        "uq_ehr_connection_self",
        "ehr_connection",
        ["account_id"],
        unique=True,
        sqlite_where=sa.text("kind = 'self'"),
        postgresql_where=sa.text("kind = 'self'"),
    )
    op.create_table(
        "entry_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("raw", JSONType, nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.Column("changed_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["fhir_record.id"],
            name=op.f("fk_entry_revision_record_id_fhir_record"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["changed_by"],
            ["account.id"],
            name=op.f("fk_entry_revision_changed_by_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entry_revision")),
        sa.UniqueConstraint("record_id", "version", name=op.f("uq_entry_revision_record_id")),
    )


def downgrade() -> None:
    op.drop_table("entry_revision")
    op.drop_index("uq_ehr_connection_self", table_name="ehr_connection")
    op.execute("DELETE FROM ehr_connection WHERE kind = 'self'")
    with op.batch_alter_table("ehr_connection") as batch:
        batch.alter_column("ehr_server_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("kind")
