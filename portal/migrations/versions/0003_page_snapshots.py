"""prepared records pages: connection data versions and page snapshots

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from portal.db import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ehr_connection") as batch:
        batch.add_column(
            sa.Column("data_version", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "page_snapshot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("banner", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_page_snapshot_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_page_snapshot")),
        sa.UniqueConstraint("key", name=op.f("uq_page_snapshot_key")),
    )
    op.create_index(op.f("ix_page_snapshot_account_id"), "page_snapshot", ["account_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_page_snapshot_account_id"), table_name="page_snapshot")
    op.drop_table("page_snapshot")
    with op.batch_alter_table("ehr_connection") as batch:
        batch.drop_column("data_version")
