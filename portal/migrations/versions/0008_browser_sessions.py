"""server-side browser sessions

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from portal.db import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KINDS = ("anonymous", "full", "launch")


def upgrade() -> None:
    op.create_table(
        "browser_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sid_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                *KINDS, name="sessionkind", native_enum=False, create_constraint=True, length=20
            ),
            nullable=False,
        ),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("connection_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("idle_until", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("user_agent", sa.String(length=300), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_browser_session_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["ehr_connection.id"],
            name=op.f("fk_browser_session_connection_id_ehr_connection"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_browser_session")),
        sa.UniqueConstraint("sid_hash", name=op.f("uq_browser_session_sid_hash")),
    )
    op.create_index("ix_browser_session_account", "browser_session", ["account_id"])
    op.create_index("ix_browser_session_ends", "browser_session", ["idle_until"])


def downgrade() -> None:
    op.drop_index("ix_browser_session_ends", table_name="browser_session")
    op.drop_index("ix_browser_session_account", table_name="browser_session")
    op.drop_table("browser_session")
