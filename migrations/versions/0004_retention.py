"""retention: indexes to delete old runs and ticks in batches; workspace concurrency cap

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ENDED = sa.text("completed_at IS NOT NULL")


def upgrade() -> None:
    op.add_column("workspaces", sa.Column("max_concurrent_runs", sa.Integer))
    op.create_check_constraint(
        op.f("ck_workspaces_max_concurrent_runs"),
        "workspaces",
        "max_concurrent_runs IS NULL OR max_concurrent_runs >= 1",
    )
    op.create_index(
        "ix_pipeline_executions_ended",
        "pipeline_executions",
        ["completed_at"],
        postgresql_where=_ENDED,
    )
    op.create_index(
        "ix_pipeline_executions_workspace_ended",
        "pipeline_executions",
        ["workspace_id", "status", "completed_at"],
        postgresql_where=_ENDED,
    )
    op.create_index("ix_schedule_ticks_created", "schedule_ticks", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_schedule_ticks_created", table_name="schedule_ticks")
    op.drop_index(
        "ix_pipeline_executions_workspace_ended",
        table_name="pipeline_executions",
        postgresql_where=_ENDED,
    )
    op.drop_index(
        "ix_pipeline_executions_ended", table_name="pipeline_executions", postgresql_where=_ENDED
    )
    op.drop_constraint(op.f("ck_workspaces_max_concurrent_runs"), "workspaces", type_="check")
    op.drop_column("workspaces", "max_concurrent_runs")
