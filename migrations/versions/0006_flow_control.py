"""flow control: limit keys, priorities, waiting runs

Streams and runs get `priority` and `limit_keys`; runs get `gated` (their claim goes through
the limits) and `waiting_for` (why a due run has not started). `limits` holds each key's
caps and the start times its rate counts. Two partial indexes serve the gate: the waiting
runs of a key in the order they start, and the gated runs that hold (or are about to take)
a slot. Ungated runs enter neither, so they pay nothing for them.

The tally trigger on updates now returns at once when the statement changed no run's status
(heartbeats, progress, a run parked or released): it used to add up an empty change set.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 09:00:00.000000
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PRIORITY = "priority IN ('high', 'normal', 'low')"
_RANK = "(CASE priority WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END)"
_STATUS_CHANGED = """EXISTS (SELECT 1 FROM old_rows o JOIN new_rows n ON n.id = o.id
                              WHERE o.status IS DISTINCT FROM n.status)"""


def _tallies() -> ModuleType:
    """Revision 0005, whose statements the update trigger keeps."""
    path = Path(__file__).with_name("0005_run_tallies.py")
    spec = importlib.util.spec_from_file_location("runway_migration_0005", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _update_trigger(only_status_changes: bool) -> None:
    tallies = _tallies()
    guard = f"IF NOT {_STATUS_CHANGED} THEN RETURN NULL; END IF;" if only_status_changes else ""
    op.execute(f"""
        CREATE OR REPLACE FUNCTION run_tallies_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN {guard} {tallies._tally(tallies._CHANGES["update"])};
          RETURN NULL;
        END $$""")


def _flow_columns(table: str) -> None:
    op.add_column(table, sa.Column("priority", sa.Text, nullable=False, server_default="normal"))
    op.add_column(
        table,
        sa.Column("limit_keys", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")),
    )
    op.create_check_constraint(op.f(f"ck_{table}_priority"), table, _PRIORITY)


def upgrade() -> None:
    _update_trigger(only_status_changes=True)
    _flow_columns("research_streams")
    op.create_check_constraint(
        op.f("ck_research_streams_limit_keys"), "research_streams", "cardinality(limit_keys) <= 8"
    )
    _flow_columns("pipeline_executions")
    op.add_column(
        "pipeline_executions",
        sa.Column("gated", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.add_column("pipeline_executions", sa.Column("waiting_for", JSONB))
    op.create_table(
        "limits",
        sa.Column(
            "workspace_id",
            UUID(as_uuid=True),
            sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("max_concurrent", sa.Integer),
        sa.Column("rate_count", sa.Integer),
        sa.Column("rate_period_seconds", sa.Double),
        sa.Column(
            "recent_starts",
            ARRAY(sa.DateTime(timezone=True)),
            nullable=False,
            server_default=sa.text("'{}'"),
        ),
        sa.Column("wake_at", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("workspace_id", "key", name=op.f("pk_limits")),
        sa.CheckConstraint(
            "max_concurrent IS NULL OR max_concurrent >= 1", name=op.f("ck_limits_max_concurrent")
        ),
        sa.CheckConstraint(
            "(rate_count IS NULL) = (rate_period_seconds IS NULL)"
            " AND (rate_count IS NULL OR rate_count >= 1)"
            " AND (rate_period_seconds IS NULL OR rate_period_seconds > 0)",
            name=op.f("ck_limits_rate"),
        ),
    )
    op.create_index(
        op.f("ix_pipeline_executions_waiting"),
        "pipeline_executions",
        ["workspace_id", sa.text("(waiting_for ->> 'key')"), sa.text(_RANK), "created_at", "id"],
        postgresql_where=sa.text("status IN ('pending', 'retrying') AND waiting_for IS NOT NULL"),
    )
    op.create_index(
        op.f("ix_pipeline_executions_holding"),
        "pipeline_executions",
        ["workspace_id", "status"],
        postgresql_where=sa.text(
            "gated AND waiting_for IS NULL AND status IN ('pending', 'running')"
        ),
    )


def downgrade() -> None:
    _update_trigger(only_status_changes=False)
    op.drop_index(op.f("ix_pipeline_executions_holding"), "pipeline_executions")
    op.drop_index(op.f("ix_pipeline_executions_waiting"), "pipeline_executions")
    op.drop_table("limits")
    for column in ("waiting_for", "gated", "limit_keys", "priority"):
        op.drop_column("pipeline_executions", column)
    for column in ("limit_keys", "priority"):
        op.drop_column("research_streams", column)
