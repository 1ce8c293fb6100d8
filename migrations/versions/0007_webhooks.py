"""webhooks: endpoints, the outbox of their deliveries, and the events written with changes

`webhooks` are a workspace's endpoints; `webhook_deliveries` is the outbox: one row per
event and endpoint, written in the transaction of the change that caused the event.

Run events are written by a trigger on `pipeline_executions`, so every statement that ends
a run (a worker's final write, the sweep's rescue, a cancel, a bulk cancel) writes its
`run.completed`, `run.failed` or `run.cancelled` in its own transaction, and nothing that
rolls back ever produces one. The same trigger writes `stream.recovered` when a scheduled run
completes and the stream's previous ended scheduled run had failed. A statement that ends no
run of a workspace with a webhook (a claim, a heartbeat) costs it one look at its own rows.

The events carry the run, stream and tick as the HTTP API shows them (`runway_run_json`,
`runway_stream_json` without `upcoming`, `runway_tick_json`); times in UTC, ISO 8601, as
the API writes them (no fraction on a whole second).

`pipeline_executions.late_at` records when the late pass found a scheduled run not started
`late_after_seconds` after its slot, so each run raises `run.late` once.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Fixed here as they were when this revision was written.
_EVENTS = (
    "run.completed",
    "run.failed",
    "run.cancelled",
    "run.late",
    "stream.paused",
    "stream.recovered",
    "schedule.missed",
)
_ENDED = "('completed', 'failed', 'cancelled')"

_FUNCTIONS = {
    "runway_utc(timestamptz)": """
        CREATE FUNCTION runway_utc(at timestamptz) RETURNS text
        LANGUAGE sql STABLE STRICT AS $$
            SELECT to_char(at AT TIME ZONE 'UTC',
                           CASE WHEN extract(microseconds FROM at)::bigint % 1000000 = 0
                                THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
                                ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END) $$""",
    "runway_run_json(jsonb)": """
        CREATE FUNCTION runway_run_json(stored jsonb) RETURNS jsonb
        LANGUAGE sql STABLE AS $$
            SELECT jsonb_build_object(
                'id', r.id, 'stream_id', r.stream_id, 'run_type', r.run_type,
                'status', r.status, 'attempt', r.attempt, 'max_attempts', r.max_attempts,
                'params', r.params, 'progress', r.progress, 'result', r.result,
                'error', r.error, 'error_type', r.error_type,
                'cancel_requested', r.cancel_requested_at IS NOT NULL,
                'scheduled_for', runway_utc(r.scheduled_for),
                'created_at', runway_utc(r.created_at),
                'started_at', runway_utc(r.started_at),
                'completed_at', runway_utc(r.completed_at),
                'retry_of', r.retry_of, 'priority', r.priority,
                'limit_keys', to_jsonb(r.limit_keys), 'waiting_for', r.waiting_for)
              FROM jsonb_populate_record(NULL::pipeline_executions, stored) r $$""",
    "runway_stream_json(jsonb)": """
        CREATE FUNCTION runway_stream_json(stored jsonb) RETURNS jsonb
        LANGUAGE sql STABLE AS $$
            SELECT jsonb_build_object(
                'id', s.id, 'name', s.name, 'pipeline', s.pipeline, 'params', s.params,
                'schedule_config', s.schedule_config,
                'next_scheduled_run', runway_utc(s.next_scheduled_run),
                'last_scheduled_run', runway_utc(s.last_scheduled_run),
                'paused_reason', s.paused_reason, 'priority', s.priority,
                'limit_keys', to_jsonb(s.limit_keys),
                'created_at', runway_utc(s.created_at),
                'updated_at', runway_utc(s.updated_at))
              FROM jsonb_populate_record(NULL::research_streams, stored) s $$""",
    "runway_tick_json(jsonb)": """
        CREATE FUNCTION runway_tick_json(stored jsonb) RETURNS jsonb
        LANGUAGE sql STABLE AS $$
            SELECT jsonb_build_object(
                'scheduled_for', runway_utc(t.scheduled_for), 'outcome', t.outcome,
                'execution_id', t.execution_id, 'reason', t.reason,
                'created_at', runway_utc(t.created_at))
              FROM jsonb_populate_record(NULL::schedule_ticks, stored) t $$""",
}

# One event id per event, shared by its deliveries to every subscribed webhook (the CTE is
# materialized: computed once, whatever the join does). The webhooks are locked (KEY SHARE,
# as the foreign key check would): one being deleted meanwhile is waited for and then
# skipped, instead of failing the statement that ends the run.
_RUN_EVENTS = f"""
    CREATE FUNCTION webhook_run_events() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      -- Most statements (claims, heartbeats, progress) end no run: out at once.
      IF NOT EXISTS (SELECT 1 FROM new_rows n
                      WHERE n.status IN {_ENDED}
                        AND EXISTS (SELECT 1 FROM webhooks w
                                     WHERE w.workspace_id = n.workspace_id)) THEN
        RETURN NULL;
      END IF;
      WITH ended AS (
          SELECT n FROM old_rows o JOIN new_rows n ON n.id = o.id
           WHERE n.status IS DISTINCT FROM o.status AND n.status IN {_ENDED}
             AND EXISTS (SELECT 1 FROM webhooks w WHERE w.workspace_id = n.workspace_id)),
      events AS MATERIALIZED (
          SELECT gen_random_uuid() AS event_id, (e.n).workspace_id,
                 'run.' || (e.n).status AS type,
                 jsonb_build_object('run', runway_run_json(to_jsonb(e.n))) AS payload
            FROM ended e
          UNION ALL
          SELECT gen_random_uuid(), (e.n).workspace_id, 'stream.recovered',
                 jsonb_build_object('stream', runway_stream_json(to_jsonb(s)),
                                    'run', runway_run_json(to_jsonb(e.n)))
            FROM ended e JOIN research_streams s ON s.id = (e.n).stream_id
           WHERE (e.n).status = 'completed' AND (e.n).run_type = 'scheduled'
             AND EXISTS (SELECT 1 FROM webhooks w
                          WHERE w.workspace_id = (e.n).workspace_id
                            AND 'stream.recovered' = ANY(w.events))
             AND (SELECT before.status FROM pipeline_executions before
                   WHERE before.stream_id = (e.n).stream_id
                     AND before.run_type = 'scheduled'
                     AND before.scheduled_for < (e.n).scheduled_for
                     AND before.status IN {_ENDED}
                   ORDER BY before.scheduled_for DESC LIMIT 1) = 'failed')
      INSERT INTO webhook_deliveries (webhook_id, event_id, type, payload)
      SELECT w.id, events.event_id, events.type, events.payload
        FROM events JOIN webhooks w
          ON w.workspace_id = events.workspace_id AND events.type = ANY(w.events)
         FOR KEY SHARE OF w
          ON CONFLICT DO NOTHING;
      RETURN NULL;
    END $$"""


def upgrade() -> None:
    op.add_column(
        "pipeline_executions", sa.Column("late_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_table(
        "webhooks",
        sa.Column(
            "id", UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()"), nullable=False
        ),
        sa.Column(
            "workspace_id",
            UUID(as_uuid=True),
            sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("events", ARRAY(sa.Text), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("backoff_until", sa.DateTime(timezone=True)),
        sa.Column("sending_until", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
        sa.CheckConstraint(
            "cardinality(events) >= 1 AND events <@ ARRAY["
            + ", ".join(f"'{event}'" for event in _EVENTS)
            + "]::text[]",
            name=op.f("ck_webhooks_events"),
        ),
    )
    op.create_index(op.f("ix_webhooks_workspace_id"), "webhooks", ["workspace_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column(
            "webhook_id",
            UUID(as_uuid=True),
            sa.ForeignKey("webhooks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_status_code", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("webhook_id", "event_id", name=op.f("pk_webhook_deliveries")),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')",
            name=op.f("ck_webhook_deliveries_status"),
        ),
    )
    op.create_index(
        op.f("ix_webhook_deliveries_pending"),
        "webhook_deliveries",
        ["webhook_id", "created_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        op.f("ix_webhook_deliveries_webhook_created"),
        "webhook_deliveries",
        ["webhook_id", "created_at"],
    )
    op.create_index(op.f("ix_webhook_deliveries_created"), "webhook_deliveries", ["created_at"])
    for create in _FUNCTIONS.values():
        op.execute(create)
    op.execute(_RUN_EVENTS)
    op.execute("""
        CREATE TRIGGER webhook_run_events AFTER UPDATE ON pipeline_executions
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION webhook_run_events()""")


def downgrade() -> None:
    op.execute("DROP TRIGGER webhook_run_events ON pipeline_executions")
    op.execute("DROP FUNCTION webhook_run_events()")
    for signature in reversed(_FUNCTIONS):
        op.execute(f"DROP FUNCTION {signature}")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    op.drop_column("pipeline_executions", "late_at")
