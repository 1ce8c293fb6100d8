"""queued runs by stream: overlap "queue" waits on every older run of the stream

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 20:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_QUEUED = sa.text("after_run IS NOT NULL AND status = 'pending'")


def upgrade() -> None:
    op.drop_index(
        "ix_pipeline_executions_after_run",
        table_name="pipeline_executions",
        postgresql_where=sa.text("after_run IS NOT NULL"),
    )
    op.create_index(
        "ix_pipeline_executions_stream_queued",
        "pipeline_executions",
        ["stream_id", "created_at", "id"],
        unique=False,
        postgresql_where=_QUEUED,
    )


def downgrade() -> None:
    op.drop_index(
        "ix_pipeline_executions_stream_queued",
        table_name="pipeline_executions",
        postgresql_where=_QUEUED,
    )
    op.create_index(
        "ix_pipeline_executions_after_run",
        "pipeline_executions",
        ["after_run"],
        unique=False,
        postgresql_where=sa.text("after_run IS NOT NULL"),
    )
