"""what the EHR had open when it launched the portal

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from portal.db import JSONType

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ehr_connection") as batch:
        batch.add_column(sa.Column("launch_context", JSONType, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("ehr_connection") as batch:
        batch.drop_column("launch_context")
