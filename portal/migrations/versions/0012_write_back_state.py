"""write-backs: their state is one of a fixed set (a CHECK constraint, as the model's enum)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

STATES = ("queued", "sending", "sent", "failed", "gave_up")


CHECK = "state IN (" + ", ".join(f"'{s}'" for s in STATES) + ")"


def upgrade() -> None:
    with op.batch_alter_table("write_back") as batch:
        batch.create_check_constraint("writebackstate", CHECK)


def downgrade() -> None:
    with op.batch_alter_table("write_back") as batch:
        batch.drop_constraint("writebackstate", type_="check")
