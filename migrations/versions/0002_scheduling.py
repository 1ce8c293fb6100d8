"""scheduling: after_run, live-run index by stream

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 09:52:39.414723
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("pipeline_executions", sa.Column("after_run", sa.UUID(), nullable=True))
    op.create_index(
        "ix_pipeline_executions_after_run",
        "pipeline_executions",
        ["after_run"],
        unique=False,
        postgresql_where=sa.text("after_run IS NOT NULL"),
    )
    op.create_index(
        "ix_pipeline_executions_stream_live",
        "pipeline_executions",
        ["stream_id", "created_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'running', 'retrying')"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_pipeline_executions_stream_live",
        table_name="pipeline_executions",
        postgresql_where=sa.text("status IN ('pending', 'running', 'retrying')"),
    )
    op.drop_index(
        "ix_pipeline_executions_after_run",
        table_name="pipeline_executions",
        postgresql_where=sa.text("after_run IS NOT NULL"),
    )
    op.drop_column("pipeline_executions", "after_run")
