"""facts: each section of a record folded when it is stored, read by pages as a query

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from portal.db import JSONType, UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fact_list",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_fact_list_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fact_list")),
        sa.UniqueConstraint("account_id", "name", "digest", name=op.f("uq_fact_list_account_id")),
    )
    op.create_index(op.f("ix_fact_list_account_id"), "fact_list", ["account_id"])
    op.create_table(
        "fact_item",
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("records", JSONType, nullable=False),
        sa.Column("apart", JSONType, nullable=True),
        sa.Column("data", JSONType, nullable=True),
        sa.ForeignKeyConstraint(
            ["list_id"],
            ["fact_list.id"],
            name=op.f("fk_fact_item_list_id_fact_list"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("list_id", "position", name=op.f("pk_fact_item")),
    )


def downgrade() -> None:
    op.drop_table("fact_item")
    op.drop_index(op.f("ix_fact_list_account_id"), table_name="fact_list")
    op.drop_table("fact_list")
