"""SPEC's tables as SQLAlchemy Core metadata: the source of truth for migrations."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

RUN_STATUSES = ("pending", "running", "retrying", "completed", "failed", "cancelled")
RUN_TYPES = ("scheduled", "manual", "test")
PRIORITIES = ("high", "normal", "low")  # the order in which waiting runs start
# Written as Postgres prints it back, so that the index on it compares equal to the models.
PRIORITY_RANK = (
    "(\nCASE priority\n    WHEN 'high'::text THEN 0\n    WHEN 'normal'::text THEN 1\n"
    "    ELSE 2\nEND)"
)
MAX_LIMIT_KEYS = 8
TICK_OUTCOMES = ("fired", "skipped_overlap", "missed", "backfilled")
# What a webhook may subscribe to; `ping` is sent by POST /webhooks/{id}/test to any webhook.
WEBHOOK_EVENTS = (
    "run.completed",
    "run.failed",
    "run.cancelled",
    "run.late",
    "stream.paused",
    "stream.recovered",
    "schedule.missed",
)
DELIVERY_STATUSES = ("pending", "delivered", "failed")


def _uuid_pk() -> sa.Column[object]:
    return sa.Column(
        "id", UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")
    )


def _created_at() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


workspaces = sa.Table(
    "workspaces",
    metadata,
    _uuid_pk(),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    _created_at(),
    # Fair share: how many of the workspace's runs may run at once (null: no cap).
    sa.Column("max_concurrent_runs", sa.Integer),
    sa.CheckConstraint(
        "max_concurrent_runs IS NULL OR max_concurrent_runs >= 1", name="max_concurrent_runs"
    ),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    _uuid_pk(),
    sa.Column(
        "workspace_id",
        UUID(as_uuid=True),
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("key_hash", sa.Text, nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    _created_at(),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

research_streams = sa.Table(
    "research_streams",
    metadata,
    _uuid_pk(),
    sa.Column(
        "workspace_id",
        UUID(as_uuid=True),
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("pipeline", sa.Text, nullable=False),
    sa.Column("params", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("schedule_config", JSONB),
    sa.Column("next_scheduled_run", sa.DateTime(timezone=True)),
    sa.Column("last_scheduled_run", sa.DateTime(timezone=True)),
    sa.Column("paused_reason", sa.Text),
    # Flow control (README: Flow control): its runs' priority and the limit keys they take.
    sa.Column("priority", sa.Text, nullable=False, server_default="normal"),
    sa.Column("limit_keys", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")),
    _created_at(),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint(_in("priority", PRIORITIES), name="priority"),
    sa.CheckConstraint(f"cardinality(limit_keys) <= {MAX_LIMIT_KEYS}", name="limit_keys"),
    # Beat's claim reads only streams that are due; the partial index keeps that cheap.
    sa.Index(
        "ix_research_streams_due",
        "next_scheduled_run",
        postgresql_where=sa.text("next_scheduled_run IS NOT NULL"),
    ),
)

schedule_ticks = sa.Table(
    "schedule_ticks",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "stream_id",
        UUID(as_uuid=True),
        sa.ForeignKey("research_streams.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("execution_id", UUID(as_uuid=True)),
    sa.Column("reason", sa.Text),
    _created_at(),
    sa.UniqueConstraint("stream_id", "scheduled_for"),
    sa.CheckConstraint(_in("outcome", TICK_OUTCOMES), name="outcome"),
    # Retention deletes the oldest ticks in batches.
    sa.Index("ix_schedule_ticks_created", "created_at"),
)

pipeline_executions = sa.Table(
    "pipeline_executions",
    metadata,
    _uuid_pk(),
    sa.Column(
        "workspace_id",
        UUID(as_uuid=True),
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # No foreign key: a run is history and outlives its stream.
    sa.Column("stream_id", UUID(as_uuid=True), nullable=False),
    sa.Column("run_type", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),
    sa.Column("scheduled_for", sa.DateTime(timezone=True)),
    sa.Column("pipeline", sa.Text, nullable=False),
    sa.Column("params", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("progress", JSONB),
    sa.Column("result", JSONB),
    sa.Column("error", sa.Text),
    sa.Column("error_type", sa.Text),
    sa.Column("worker", sa.Text),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
    sa.Column("cancel_requested_at", sa.DateTime(timezone=True)),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.Column("retry_of", UUID(as_uuid=True)),
    # overlap "queue": this scheduled run starts only once that run has ended.
    sa.Column("after_run", UUID(as_uuid=True)),
    sa.Column("idempotency_key", sa.Text),
    _created_at(),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    # Flow control: fixed when the run is created, from its stream (priority: or the request).
    sa.Column("priority", sa.Text, nullable=False, server_default="normal"),
    sa.Column("limit_keys", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")),
    # True when the run names limit keys or its workspace had a cap: its claim then goes
    # through app/limits (the gate) and its end releases the runs waiting behind it.
    sa.Column("gated", sa.Boolean, nullable=False, server_default=sa.false()),
    # Why a due run has not started: {"kind": concurrency|rate|workspace|overlap, "key",
    # "until"}; null for a run that may start (or has started, or ended).
    sa.Column("waiting_for", JSONB(none_as_null=True)),
    # When the late pass found this scheduled run not started `late_after_seconds` after
    # its slot (and raised `run.late`): each run is found late once.
    sa.Column("late_at", sa.DateTime(timezone=True)),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint(_in("status", RUN_STATUSES), name="status"),
    sa.CheckConstraint(_in("run_type", RUN_TYPES), name="run_type"),
    sa.CheckConstraint("attempt >= 0 AND attempt <= max_attempts", name="attempt"),
    sa.CheckConstraint(_in("priority", PRIORITIES), name="priority"),
    sa.UniqueConstraint("workspace_id", "idempotency_key"),
    sa.Index(
        "uq_pipeline_executions_scheduled_slot",
        "stream_id",
        "scheduled_for",
        unique=True,
        postgresql_where=sa.text("run_type = 'scheduled'"),
    ),
    sa.Index("ix_pipeline_executions_workspace_created", "workspace_id", "created_at", "id"),
    sa.Index("ix_pipeline_executions_stream_created", "stream_id", "created_at"),
    # Housekeeping scans only the live runs.
    sa.Index(
        "ix_pipeline_executions_live",
        "status",
        "updated_at",
        postgresql_where=sa.text("status IN ('pending', 'running', 'retrying')"),
    ),
    # The ticker's overlap check: a stream's live runs.
    sa.Index(
        "ix_pipeline_executions_stream_live",
        "stream_id",
        "created_at",
        postgresql_where=sa.text("status IN ('pending', 'running', 'retrying')"),
    ),
    # Retention and cleanup delete ended runs oldest first, in batches.
    sa.Index(
        "ix_pipeline_executions_ended",
        "completed_at",
        postgresql_where=sa.text("completed_at IS NOT NULL"),
    ),
    # A workspace's ended runs of one status by age: POST /runs/cleanup's batches, and
    # /status's latest failures (read backwards, newest first).
    sa.Index(
        "ix_pipeline_executions_workspace_ended",
        "workspace_id",
        "status",
        "completed_at",
        postgresql_where=sa.text("completed_at IS NOT NULL"),
    ),
    # Overlap "queue": the runs of a stream waiting for the older ones to end, oldest first.
    sa.Index(
        "ix_pipeline_executions_stream_queued",
        "stream_id",
        "created_at",
        "id",
        postgresql_where=sa.text("after_run IS NOT NULL AND status = 'pending'"),
    ),
    # Bulk retry skips runs retried before: their retries, by the run they retry.
    sa.Index(
        "ix_pipeline_executions_retry_of",
        "retry_of",
        postgresql_where=sa.text("retry_of IS NOT NULL"),
    ),
    # Flow control: the runs waiting for a key (or their workspace), in the order they start.
    sa.Index(
        "ix_pipeline_executions_waiting",
        "workspace_id",
        sa.text("(waiting_for ->> 'key'::text)"),
        sa.text(PRIORITY_RANK),
        "created_at",
        "id",
        postgresql_where=sa.text("status IN ('pending', 'retrying') AND waiting_for IS NOT NULL"),
    ),
    # ... and the gated runs that hold a slot (running) or are on their way to one.
    sa.Index(
        "ix_pipeline_executions_holding",
        "workspace_id",
        "status",
        postgresql_where=sa.text(
            "gated AND waiting_for IS NULL AND status IN ('pending', 'running')"
        ),
    ),
)

# Limit keys (README: Flow control). A key without a row has no limit. `recent_starts`
# holds the start times of the last `rate_count` attempts (the sliding window of the rate);
# `wake_at` is when a release is already scheduled for the runs waiting on the rate.
limits = sa.Table(
    "limits",
    metadata,
    sa.Column(
        "workspace_id",
        UUID(as_uuid=True),
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key", sa.Text, primary_key=True),
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
    _created_at(),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint("max_concurrent IS NULL OR max_concurrent >= 1", name="max_concurrent"),
    sa.CheckConstraint(
        "(rate_count IS NULL) = (rate_period_seconds IS NULL)"
        " AND (rate_count IS NULL OR rate_count >= 1)"
        " AND (rate_period_seconds IS NULL OR rate_period_seconds > 0)",
        name="rate",
    ),
)

# Running sums per workspace, kept by triggers on pipeline_executions in the statement that
# changes a run (migration 0005 creates them): `runs:<status>` (rows stored), `retries`,
# `rescues`, `republishes`, and histograms as `<name>:sum` and `<name>:le:<bound>` (one
# bucket each, not cumulative). Each sum is spread over a few shards; readers add them up.
run_tallies = sa.Table(
    "run_tallies",
    metadata,
    sa.Column(
        "workspace_id",
        UUID(as_uuid=True),
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("shard", sa.SmallInteger, primary_key=True),
    sa.Column("value", sa.Double, nullable=False, server_default="0"),
)

# Webhooks (README: Webhooks). `failures` counts the endpoint's failed attempts in a row and
# `backoff_until` holds its deliveries back meanwhile: a failing endpoint is tried with one
# delivery at a time, not with everything it has pending. `sending_until` leases it to the
# beat with an attempt in flight: one attempt at a time per endpoint, whatever the beats.
webhooks = sa.Table(
    "webhooks",
    metadata,
    _uuid_pk(),
    sa.Column(
        "workspace_id",
        UUID(as_uuid=True),
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("events", ARRAY(sa.Text), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("backoff_until", sa.DateTime(timezone=True)),
    sa.Column("sending_until", sa.DateTime(timezone=True)),
    _created_at(),
    sa.CheckConstraint(
        "cardinality(events) >= 1 AND events <@ ARRAY["
        + ", ".join(f"'{event}'" for event in WEBHOOK_EVENTS)
        + "]::text[]",
        name="events",
    ),
)

# The outbox: one row per event and webhook, written in the transaction of the change that
# caused the event; `payload` is the event's `data`. Beat delivers the pending ones.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column(
        "webhook_id",
        UUID(as_uuid=True),
        sa.ForeignKey("webhooks.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("payload", JSONB, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    _created_at(),
    sa.CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
    # Beat's claim: the webhooks with pending deliveries, and each one's oldest (also the
    # age /metrics reports); a dead endpoint's backlog is never walked.
    sa.Index(
        "ix_webhook_deliveries_pending",
        "webhook_id",
        "created_at",
        postgresql_where=sa.text("status = 'pending'"),
    ),
    # A webhook's deliveries, newest first; retention deletes the oldest in batches.
    sa.Index("ix_webhook_deliveries_webhook_created", "webhook_id", "created_at"),
    sa.Index("ix_webhook_deliveries_created", "created_at"),
)

# The console (api/console): the key that signs its session cookies when RUNWAY_UI_SECRET is
# not set, made once by the first API process that needs it, so every API process and every
# restart signs alike. One row.
console_secrets = sa.Table(
    "console_secrets",
    metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("secret", sa.Text, nullable=False),
    _created_at(),
    sa.CheckConstraint("id = 1", name="one_row"),
)
# The console's overview: the slots missed or skipped lately, without walking every tick.
sa.Index(
    "ix_schedule_ticks_trouble",
    schedule_ticks.c.created_at,
    postgresql_where=sa.text("outcome IN ('missed', 'skipped_overlap')"),
)
