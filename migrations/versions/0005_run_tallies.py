"""run tallies: metrics and /status at constant cost

`run_tallies` holds, per workspace, running sums that triggers on `pipeline_executions` keep
in the same statement as the change: rows stored by status (a delete subtracts), transitions
that only ever add (retries, rescues) and histogram buckets and sums (run duration, schedule
lag). Each sum is spread over a few shards (by a hash of the run id) so that concurrent
transitions of one workspace seldom wait on one row; readers add the shards up.

The triggers are statement-level with transition tables: a statement that changes many runs
(a rescue, a bulk cancel, a retention batch, a backfill) adds its changes up once and
upserts in one order (workspace, name, shard), so two statements never wait on each other's
rows in a cycle. The upgrade creates the triggers before it counts the rows already stored:
creating a trigger locks out writers until the migration commits, so none is missed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Fixed here as they were when this revision was written; app/monitoring reads the bucket
# bounds back from the names the triggers write.
SHARDS = 8
DURATION_BOUNDS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 10800)
LAG_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)

# What one statement changed, one row per run: its status before and after (NULL: the row
# did not exist / no longer exists) and the columns the histograms need.
_COLUMNS = """n.started_at, n.completed_at, n.scheduled_for, n.run_type, n.error_type"""
_CHANGES = {
    "insert": f"""
        SELECT n.workspace_id, hashtext(n.id::text) & {SHARDS - 1} AS shard,
               NULL::text AS old_status, n.status AS new_status,
               NULL::timestamptz AS old_started_at, {_COLUMNS}
          FROM new_rows n""",
    "update": f"""
        SELECT n.workspace_id, hashtext(n.id::text) & {SHARDS - 1} AS shard,
               o.status AS old_status, n.status AS new_status,
               o.started_at AS old_started_at, {_COLUMNS}
          FROM old_rows o JOIN new_rows n ON n.id = o.id
         WHERE o.status IS DISTINCT FROM n.status""",
    "delete": f"""
        SELECT o.workspace_id, hashtext(o.id::text) & {SHARDS - 1} AS shard,
               o.status AS old_status, NULL::text AS new_status,
               o.started_at AS old_started_at, NULL::timestamptz AS started_at,
               NULL::timestamptz AS completed_at, NULL::timestamptz AS scheduled_for,
               NULL::text AS run_type, NULL::text AS error_type
          FROM old_rows o""",
}


def _histogram(name: str, seconds: str, bounds: tuple[float, ...], when: str) -> str:
    """Deltas of a histogram: its sum, and one bucket named by its upper bound
    (`<name>:le:<bound>`, `Infinity` above the last one); readers make them cumulative."""
    array = f"ARRAY[{', '.join(str(bound) for bound in bounds)}]::float8[]"
    return f"""
        SELECT c.workspace_id, c.shard, h.name, h.value
          FROM changes c
         CROSS JOIN LATERAL (SELECT greatest(0, extract(epoch FROM {seconds}))::float8 AS s) d
         CROSS JOIN LATERAL (VALUES
               ('{name}:sum', d.s),
               ('{name}:le:' || (SELECT coalesce(min(b), 'Infinity') FROM unnest({array}) b
                                  WHERE b >= d.s)::text, 1)) h(name, value)
         WHERE {when}"""


_DELTAS = f"""
        SELECT workspace_id, shard, 'runs:' || new_status AS name, 1::float8 AS value
          FROM changes WHERE new_status IS NOT NULL
        UNION ALL
        SELECT workspace_id, shard, 'runs:' || old_status, -1 FROM changes
         WHERE old_status IS NOT NULL
        UNION ALL
        SELECT workspace_id, shard, 'retries', 1 FROM changes WHERE new_status = 'retrying'
        UNION ALL
        SELECT workspace_id, shard, 'ended:' || new_status, 1 FROM changes
         WHERE new_status IN ('completed', 'failed', 'cancelled')
        UNION ALL
        SELECT workspace_id, shard, 'rescues', 1 FROM changes
         WHERE old_status = 'running' AND error_type = 'lease_expired'
        UNION ALL {
    _histogram(
        "run_duration_seconds",
        "c.completed_at - c.started_at",
        DURATION_BOUNDS,
        "c.new_status = 'completed' AND c.started_at IS NOT NULL AND c.completed_at IS NOT NULL",
    )
}
        UNION ALL {
    _histogram(
        "schedule_lag_seconds",
        "c.started_at - c.scheduled_for",
        LAG_BOUNDS,
        "c.run_type = 'scheduled' AND c.scheduled_for IS NOT NULL "
        "AND c.started_at IS NOT NULL AND c.old_started_at IS NULL",
    )
}"""


def _tally(changes: str) -> str:
    """One upsert of every delta of `changes`, added up, in one lock order. A workspace
    being deleted (its runs going with it by cascade) is not tallied again."""
    return f"""
    WITH changes AS ({changes}),
         deltas AS ({_DELTAS})
    INSERT INTO run_tallies AS t (workspace_id, name, shard, value)
    SELECT d.workspace_id, d.name, d.shard, sum(d.value)
      FROM deltas d
     WHERE EXISTS (SELECT 1 FROM workspaces w WHERE w.id = d.workspace_id)
     GROUP BY d.workspace_id, d.name, d.shard
    HAVING sum(d.value) <> 0
     ORDER BY d.workspace_id, d.name, d.shard
    ON CONFLICT (workspace_id, name, shard) DO UPDATE SET value = t.value + excluded.value"""


def _create_triggers() -> None:
    for event, changes in _CHANGES.items():
        tables = {
            "insert": "NEW TABLE AS new_rows",
            "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
            "delete": "OLD TABLE AS old_rows",
        }[event]
        op.execute(f"""
            CREATE FUNCTION run_tallies_{event}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN {_tally(changes)};
              RETURN NULL;
            END $$""")
        op.execute(f"""
            CREATE TRIGGER run_tallies_{event} AFTER {event.upper()} ON pipeline_executions
            REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION run_tallies_{event}()""")
    # TRUNCATE empties the table: no run is stored any more (the counters stay).
    op.execute("""
        CREATE FUNCTION run_tallies_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN DELETE FROM run_tallies WHERE name LIKE 'runs:%'; RETURN NULL; END $$""")
    op.execute("""
        CREATE TRIGGER run_tallies_truncate AFTER TRUNCATE ON pipeline_executions
        FOR EACH STATEMENT EXECUTE FUNCTION run_tallies_truncate()""")


def upgrade() -> None:
    op.create_table(
        "run_tallies",
        sa.Column(
            "workspace_id",
            UUID(as_uuid=True),
            sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("shard", sa.SmallInteger, nullable=False),
        sa.Column("value", sa.Double, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("workspace_id", "name", "shard", name=op.f("pk_run_tallies")),
    )
    _create_triggers()
    # Every run already stored, counted as if it had just been inserted.
    op.execute(_tally(_CHANGES["insert"].replace("new_rows", "pipeline_executions")))


def downgrade() -> None:
    for event in (*_CHANGES, "truncate"):
        op.execute(f"DROP TRIGGER run_tallies_{event} ON pipeline_executions")
        op.execute(f"DROP FUNCTION run_tallies_{event}()")
    op.drop_table("run_tallies")
