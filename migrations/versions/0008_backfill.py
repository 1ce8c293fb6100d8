"""backfill and bulk operations: the `backfilled` tick outcome, retries by the run they retry

A slot filled by `POST /streams/{id}/backfill` is recorded `backfilled`. Bulk retry skips the
runs that were retried before, found along a partial index on `retry_of`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OUTCOME = "ck_schedule_ticks_outcome"


def _outcomes(*outcomes: str) -> str:
    return "outcome IN (" + ", ".join(f"'{outcome}'" for outcome in outcomes) + ")"


def upgrade() -> None:
    op.drop_constraint(op.f(_OUTCOME), "schedule_ticks", type_="check")
    op.create_check_constraint(
        op.f(_OUTCOME),
        "schedule_ticks",
        _outcomes("fired", "skipped_overlap", "missed", "backfilled"),
    )
    op.create_index(
        op.f("ix_pipeline_executions_retry_of"),
        "pipeline_executions",
        ["retry_of"],
        postgresql_where=sa.text("retry_of IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_pipeline_executions_retry_of"), "pipeline_executions")
    op.execute("UPDATE schedule_ticks SET outcome = 'fired' WHERE outcome = 'backfilled'")
    op.drop_constraint(op.f(_OUTCOME), "schedule_ticks", type_="check")
    op.create_check_constraint(
        op.f(_OUTCOME), "schedule_ticks", _outcomes("fired", "skipped_overlap", "missed")
    )
