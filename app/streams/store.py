"""Every SQL statement about streams and their ticks; nothing commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Row

from app.models import research_streams as streams
from app.models import schedule_ticks as ticks

COLUMNS = (*streams.c,)


def insert(conn: Connection, values: Mapping[str, Any]) -> Row[Any]:
    return conn.execute(sa.insert(streams).values(**values).returning(*COLUMNS)).one()


def get(
    conn: Connection, stream_id: UUID, workspace_id: UUID, *, for_update: bool = False
) -> Row[Any] | None:
    statement = sa.select(*COLUMNS).where(
        streams.c.id == stream_id, streams.c.workspace_id == workspace_id
    )
    if for_update:
        statement = statement.with_for_update()
    return conn.execute(statement).first()


def workspace_of(conn: Connection, stream_id: UUID) -> UUID | None:
    statement = sa.select(streams.c.workspace_id).where(streams.c.id == stream_id)
    workspace_id: UUID | None = conn.execute(statement).scalar()
    return workspace_id


def find_by_name(conn: Connection, workspace_id: UUID, name: str) -> Row[Any] | None:
    statement = sa.select(*COLUMNS).where(
        streams.c.workspace_id == workspace_id, streams.c.name == name
    )
    return conn.execute(statement.limit(1)).first()


def list_for(conn: Connection, workspace_id: UUID, limit: int, offset: int) -> Sequence[Row[Any]]:
    statement = (
        sa.select(*COLUMNS)
        .where(streams.c.workspace_id == workspace_id)
        .order_by(streams.c.created_at, streams.c.id)
        .limit(limit)
        .offset(offset)
    )
    return conn.execute(statement).all()


def update(conn: Connection, stream_id: UUID, values: Mapping[str, Any]) -> Row[Any]:
    statement = (
        sa.update(streams)
        .where(streams.c.id == stream_id)
        .values(updated_at=sa.func.now(), **values)
        .returning(*COLUMNS)
    )
    return conn.execute(statement).one()


def delete(conn: Connection, stream_id: UUID, workspace_id: UUID) -> bool:
    statement = sa.delete(streams).where(
        streams.c.id == stream_id, streams.c.workspace_id == workspace_id
    )
    return conn.execute(statement).rowcount > 0


def recent_ticks(conn: Connection, stream_id: UUID, limit: int) -> Sequence[Row[Any]]:
    statement = (
        sa.select(*ticks.c)
        .where(ticks.c.stream_id == stream_id)
        .order_by(ticks.c.scheduled_for.desc())
        .limit(limit)
    )
    return conn.execute(statement).all()


def claim_due(conn: Connection, now: datetime, limit: int) -> Sequence[Row[Any]]:
    """Lock the streams whose slot came due (oldest first); another beat skips them."""
    statement = (
        sa.select(*COLUMNS)
        .where(streams.c.next_scheduled_run <= now)
        .order_by(streams.c.next_scheduled_run)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return conn.execute(statement).all()


def begin_batch(conn: Connection, idle_seconds: int) -> datetime:
    """Start a tick's batch: bound how long its transaction may sit idle holding the streams
    it locks, and read Postgres' time, the one clock every beat schedules by (in UTC)."""
    now: datetime = conn.execute(
        sa.text(
            "SELECT statement_timestamp(), set_config('idle_in_transaction_session_timeout',"
            " CAST(:ms AS text), true)"
        ),
        {"ms": idle_seconds * 1000},
    ).scalar_one()
    return now.astimezone(UTC)


def next_due(conn: Connection) -> tuple[datetime | None, datetime]:
    """The earliest upcoming slot of any stream (when beat should look again), and
    Postgres' time when it was read."""
    earliest, now = conn.execute(
        sa.select(sa.func.min(streams.c.next_scheduled_run), sa.func.statement_timestamp())
    ).one()
    return earliest, now.astimezone(UTC)


_ADVANCE = sa.text("""
UPDATE research_streams s
   SET next_scheduled_run = moved.next_run,
       last_scheduled_run = coalesce(moved.fired, s.last_scheduled_run),
       updated_at = now()
  FROM unnest(CAST(:ids AS uuid[]), CAST(:next_runs AS timestamptz[]),
              CAST(:fired AS timestamptz[])) AS moved(id, next_run, fired)
 WHERE s.id = moved.id
""")


def advance(
    conn: Connection,
    stream_ids: Sequence[UUID],
    next_runs: Sequence[datetime],
    fired: Sequence[datetime | None],
) -> None:
    """Set many streams' next (and, where a run fired, last) scheduled run in one statement."""
    if stream_ids:
        parameters = {"ids": list(stream_ids), "next_runs": list(next_runs), "fired": list(fired)}
        conn.execute(_ADVANCE, parameters)


_RECORD_TICKS = sa.text("""
INSERT INTO schedule_ticks (stream_id, scheduled_for, outcome, execution_id, reason)
SELECT * FROM unnest(CAST(:stream_ids AS uuid[]), CAST(:slots AS timestamptz[]),
                     CAST(:outcomes AS text[]), CAST(:runs AS uuid[]), CAST(:reasons AS text[]))
    ON CONFLICT (stream_id, scheduled_for) DO NOTHING
RETURNING id, outcome
""")
_TICK_ARRAYS = {
    "stream_ids": "stream_id",
    "slots": "scheduled_for",
    "outcomes": "outcome",
    "runs": "execution_id",
    "reasons": "reason",
}


def record_ticks(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """One row per slot, in one statement; a slot recorded before (a duplicate tick) keeps
    its first record.

    Returns the ids of the `missed` ticks this call recorded (their events follow).
    """
    if not rows:
        return []
    parameters = {name: [row[column] for row in rows] for name, column in _TICK_ARRAYS.items()}
    recorded = conn.execute(_RECORD_TICKS, parameters)
    return [tick_id for tick_id, outcome in recorded if outcome == "missed"]


def record_backfilled(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Ticks of backfilled slots (`stream_id`, `scheduled_for`, `execution_id`): only slots
    whose run was just created, so a tick recorded before (`missed`, `skipped_overlap`, or
    `fired` with a run since deleted) names no live run and now says `backfilled`."""
    if not rows:
        return
    values = [{**row, "outcome": "backfilled", "reason": BACKFILLED} for row in rows]
    statement = pg_insert(ticks).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=[ticks.c.stream_id, ticks.c.scheduled_for],
        set_={
            "outcome": statement.excluded.outcome,
            "execution_id": statement.excluded.execution_id,
            "reason": statement.excluded.reason,
        },
    )
    conn.execute(statement)


BACKFILLED = "backfilled on request"


# One statement: pause only if the stream is enabled, asks for auto-pause, and its last N
# ended scheduled runs all failed. Cancelled runs break a streak; live runs do not count.
_PAUSE = sa.text("""
UPDATE research_streams s
   SET schedule_config = jsonb_set(s.schedule_config, '{enabled}', 'false'::jsonb),
       next_scheduled_run = NULL,
       paused_reason = format('paused after %s consecutive failed scheduled runs',
                              s.schedule_config->>'pause_after_failures'),
       updated_at = now()
 WHERE s.id = :stream_id
   AND (s.schedule_config->>'enabled')::boolean
   AND (s.schedule_config->>'pause_after_failures') IS NOT NULL
   AND (SELECT count(*) FILTER (WHERE recent.status = 'failed')
          FROM (SELECT e.status FROM pipeline_executions e
                 WHERE e.stream_id = s.id AND e.run_type = 'scheduled'
                   AND e.status IN ('completed', 'failed', 'cancelled')
                 ORDER BY e.scheduled_for DESC
                 LIMIT (s.schedule_config->>'pause_after_failures')::int) recent
       ) = (s.schedule_config->>'pause_after_failures')::int
RETURNING s.paused_reason
""")


def pause_if_failing(conn: Connection, stream_id: UUID) -> str | None:
    """Pause the stream if its `pause_after_failures` streak is complete; the reason if so."""
    reason: str | None = conn.execute(_PAUSE, {"stream_id": stream_id}).scalar()
    return reason


# Retention: the oldest ticks first, one bounded batch per statement, along
# ix_schedule_ticks_created; `after` is where the previous batch stopped. By ctid, as runs are.
_DELETE_TICKS = sa.text("""
WITH doomed AS (
    SELECT ctid FROM schedule_ticks
     WHERE created_at < :before AND created_at >= :after
     ORDER BY created_at
     LIMIT :limit
       FOR UPDATE SKIP LOCKED),
gone AS (
    DELETE FROM schedule_ticks WHERE ctid = ANY(ARRAY(SELECT ctid FROM doomed))
    RETURNING created_at)
SELECT count(*), max(created_at) FROM gone
""")


def delete_ticks(
    conn: Connection, before: datetime, after: datetime, limit: int
) -> tuple[int, datetime | None]:
    """Delete up to `limit` ticks recorded in [after, before), oldest first. Returns how many,
    and the latest created_at deleted: the next batch's `after`."""
    parameters = {"before": before, "after": after, "limit": limit}
    count, last = conn.execute(_DELETE_TICKS, parameters).one()
    return count, last
