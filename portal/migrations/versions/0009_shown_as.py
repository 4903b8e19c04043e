"""how the record is shown: the account's unit system and time zone

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SYSTEMS = ("metric", "us")


def upgrade() -> None:
    with op.batch_alter_table("account") as batch:
        batch.add_column(
            sa.Column(
                "units",
                sa.Enum(
                    *SYSTEMS,
                    name="unitsystem",
                    native_enum=False,
                    create_constraint=True,
                    length=10,
                ),
                nullable=True,
            )
        )
        batch.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("time_zone_chosen", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("account") as batch:
        batch.drop_column("time_zone_chosen")
        batch.drop_column("time_zone")
        batch.drop_constraint("unitsystem", type_="check")
        batch.drop_column("units")
