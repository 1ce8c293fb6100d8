"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 09:37:35.582012
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
        sa.UniqueConstraint("name", name=op.f("uq_workspaces_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_api_keys_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_workspace_id"), "api_keys", ["workspace_id"], unique=False)
    op.create_table(
        "pipeline_executions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("stream_id", sa.UUID(), nullable=False),
        sa.Column("run_type", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pipeline", sa.Text(), nullable=False),
        sa.Column(
            "params",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("progress", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_type", sa.Text(), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retry_of", sa.UUID(), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "run_type IN ('scheduled', 'manual', 'test')",
            name=op.f("ck_pipeline_executions_run_type"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'retrying', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_pipeline_executions_status"),
        ),
        sa.CheckConstraint(
            "attempt >= 0 AND attempt <= max_attempts", name=op.f("ck_pipeline_executions_attempt")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_pipeline_executions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_executions")),
        sa.UniqueConstraint(
            "workspace_id",
            "idempotency_key",
            name=op.f("uq_pipeline_executions_workspace_id_idempotency_key"),
        ),
    )
    op.create_index(
        "ix_pipeline_executions_live",
        "pipeline_executions",
        ["status", "updated_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'running', 'retrying')"),
    )
    op.create_index(
        "ix_pipeline_executions_stream_created",
        "pipeline_executions",
        ["stream_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_pipeline_executions_workspace_created",
        "pipeline_executions",
        ["workspace_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "uq_pipeline_executions_scheduled_slot",
        "pipeline_executions",
        ["stream_id", "scheduled_for"],
        unique=True,
        postgresql_where=sa.text("run_type = 'scheduled'"),
    )
    op.create_table(
        "research_streams",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("pipeline", sa.Text(), nullable=False),
        sa.Column(
            "params",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("schedule_config", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("next_scheduled_run", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_scheduled_run", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_research_streams_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_research_streams")),
    )
    op.create_index(
        "ix_research_streams_due",
        "research_streams",
        ["next_scheduled_run"],
        unique=False,
        postgresql_where=sa.text("next_scheduled_run IS NOT NULL"),
    )
    op.create_index(
        op.f("ix_research_streams_workspace_id"), "research_streams", ["workspace_id"], unique=False
    )
    op.create_table(
        "schedule_ticks",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("stream_id", sa.UUID(), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("execution_id", sa.UUID(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "outcome IN ('fired', 'skipped_overlap', 'missed')",
            name=op.f("ck_schedule_ticks_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["stream_id"],
            ["research_streams.id"],
            name=op.f("fk_schedule_ticks_stream_id_research_streams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_ticks")),
        sa.UniqueConstraint(
            "stream_id", "scheduled_for", name=op.f("uq_schedule_ticks_stream_id_scheduled_for")
        ),
    )


def downgrade() -> None:
    op.drop_table("schedule_ticks")
    op.drop_index(op.f("ix_research_streams_workspace_id"), table_name="research_streams")
    op.drop_index(
        "ix_research_streams_due",
        table_name="research_streams",
        postgresql_where=sa.text("next_scheduled_run IS NOT NULL"),
    )
    op.drop_table("research_streams")
    op.drop_index(
        "uq_pipeline_executions_scheduled_slot",
        table_name="pipeline_executions",
        postgresql_where=sa.text("run_type = 'scheduled'"),
    )
    op.drop_index("ix_pipeline_executions_workspace_created", table_name="pipeline_executions")
    op.drop_index("ix_pipeline_executions_stream_created", table_name="pipeline_executions")
    op.drop_index(
        "ix_pipeline_executions_live",
        table_name="pipeline_executions",
        postgresql_where=sa.text("status IN ('pending', 'running', 'retrying')"),
    )
    op.drop_table("pipeline_executions")
    op.drop_index(op.f("ix_api_keys_workspace_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("workspaces")
