"""accounts, EHR connections, OAuth transactions, sync, records

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from portal.db import JSONType, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_login_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account")),
        sa.UniqueConstraint("email", name=op.f("uq_account_email")),
    )
    op.create_table(
        "ehr_connection",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("ehr_server_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("fhir_user", sa.String(length=500), nullable=True),
        sa.Column("subject", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("requested_scope", sa.Text(), nullable=False),
        sa.Column("granted_scope", sa.Text(), nullable=False),
        sa.Column("access_token_enc", sa.Text(), nullable=True),
        sa.Column("refresh_token_enc", sa.Text(), nullable=True),
        sa.Column("token_expires_at", UTCDateTime(), nullable=True),
        sa.Column("refresh_lock_until", UTCDateTime(), nullable=True),
        sa.Column("need_patient_banner", sa.Boolean(), nullable=False),
        sa.Column("smart_style_url", sa.String(length=500), nullable=True),
        sa.Column("encounter_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
        sa.Column("last_synced_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_ehr_connection_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ehr_server_id"],
            ["ehr_server.id"],
            name=op.f("fk_ehr_connection_ehr_server_id_ehr_server"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ehr_connection")),
        sa.UniqueConstraint(
            "account_id", "ehr_server_id", "patient_id", name=op.f("uq_ehr_connection_account_id")
        ),
    )
    op.create_table(
        "oauth_transaction",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("browser_binding_hash", sa.String(length=64), nullable=False),
        sa.Column("ehr_server_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("launch", sa.String(length=500), nullable=True),
        sa.Column("code_verifier_enc", sa.Text(), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("redirect_uri", sa.String(length=500), nullable=False),
        sa.Column("requested_scope", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_oauth_transaction_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ehr_server_id"],
            ["ehr_server.id"],
            name=op.f("fk_oauth_transaction_ehr_server_id_ehr_server"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_transaction")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_oauth_transaction_state_hash")),
    )
    op.create_table(
        "password_reset",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_password_reset_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_reset")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_password_reset_token_hash")),
    )
    op.create_table(
        "fhir_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.String(length=64), nullable=True),
        sa.Column("last_updated", UTCDateTime(), nullable=True),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=True),
        sa.Column("code_system", sa.String(length=255), nullable=True),
        sa.Column("code", sa.String(length=100), nullable=True),
        sa.Column("display", sa.String(length=500), nullable=True),
        sa.Column("effective_at", UTCDateTime(), nullable=True),
        sa.Column("raw", JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["ehr_connection.id"],
            name=op.f("fk_fhir_record_connection_id_ehr_connection"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fhir_record")),
        sa.UniqueConstraint(
            "connection_id",
            "resource_type",
            "resource_id",
            name=op.f("uq_fhir_record_connection_id"),
        ),
    )
    with op.batch_alter_table("fhir_record", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fhir_record_category", ["connection_id", "category", "effective_at"], unique=False
        )

    op.create_table(
        "sync_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("progress", JSONType, nullable=False),
        sa.Column("since", UTCDateTime(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["ehr_connection.id"],
            name=op.f("fk_sync_run_connection_id_ehr_connection"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_run")),
    )
    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sync_run_connection_status", ["connection_id", "status"], unique=False
        )

    op.create_table(
        "quarantined_resource",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("sync_run_id", sa.Integer(), nullable=True),
        sa.Column("resource_type", sa.String(length=64), nullable=True),
        sa.Column("resource_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("raw", JSONType, nullable=True),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["ehr_connection.id"],
            name=op.f("fk_quarantined_resource_connection_id_ehr_connection"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sync_run_id"],
            ["sync_run.id"],
            name=op.f("fk_quarantined_resource_sync_run_id_sync_run"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantined_resource")),
    )
    with op.batch_alter_table("ehr_server", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_secret_enc", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ehr_server", schema=None) as batch_op:
        batch_op.drop_column("client_secret_enc")

    op.drop_table("quarantined_resource")
    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_run_connection_status")

    op.drop_table("sync_run")
    with op.batch_alter_table("fhir_record", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_record_category")

    op.drop_table("fhir_record")
    op.drop_table("password_reset")
    op.drop_table("oauth_transaction")
    op.drop_table("ehr_connection")
    op.drop_table("account")
