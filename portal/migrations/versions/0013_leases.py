"""leases: the token refresh's lease is stamped when taken (as the sync runs' and the
write-backs' are: portal.leases); a sync run's status is one of a fixed set (CHECK)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

STATUSES = ("queued", "running", "complete", "incomplete", "failed")
CHECK = "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")"


def upgrade() -> None:
    # A lease held now (until a moment to come) is a few seconds of one refresh: dropped.
    op.execute("UPDATE ehr_connection SET refresh_lock_until = NULL")
    # Both databases rename a column in place (no copy of the table).
    op.execute("ALTER TABLE ehr_connection RENAME COLUMN refresh_lock_until TO refresh_lease_at")
    with op.batch_alter_table("sync_run") as batch:
        batch.create_check_constraint("syncstatus", CHECK)


def downgrade() -> None:
    with op.batch_alter_table("sync_run") as batch:
        batch.drop_constraint("syncstatus", type_="check")
    op.execute("UPDATE ehr_connection SET refresh_lease_at = NULL")
    op.execute("ALTER TABLE ehr_connection RENAME COLUMN refresh_lease_at TO refresh_lock_until")
