"""The statements that write events into the outbox (`webhook_deliveries`), each run in the
transaction of the change that causes the event.

Run ends (`run.completed`, `run.failed`, `run.cancelled`) and `stream.recovered` are written
by a trigger on `pipeline_executions` (migration 0007), so no statement that ends a run can
forget them. The others are written here: `stream.paused` with the pause, `schedule.missed`
with the tick, `run.late` by the late pass, `ping` on request. An event is one row per
subscribed webhook, all with the same event id; a workspace without a subscriber gets none.
Each statement locks the webhooks it writes for (KEY SHARE): a webhook being deleted is
waited for and skipped, so a delete never fails the change that causes an event.
The run, stream and tick in an event are rendered by SQL functions of migration 0007, as
the HTTP API shows them (a stream without `upcoming`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

_PING = sa.text("""
INSERT INTO webhook_deliveries (webhook_id, event_id, type, payload)
SELECT w.id, :event_id, 'ping', :payload FROM webhooks w WHERE w.id = :webhook_id
   FOR KEY SHARE OF w
""").bindparams(sa.bindparam("payload", type_=JSONB))


def ping(conn: Connection, webhook_id: UUID, event_id: UUID, payload: dict[str, Any]) -> None:
    conn.execute(_PING, {"webhook_id": webhook_id, "event_id": event_id, "payload": payload})


_STREAM_PAUSED = sa.text("""
INSERT INTO webhook_deliveries (webhook_id, event_id, type, payload)
SELECT w.id, :event_id, 'stream.paused',
       jsonb_build_object('stream', runway_stream_json(to_jsonb(s)), 'reason', s.paused_reason)
  FROM research_streams s
  JOIN webhooks w ON w.workspace_id = s.workspace_id AND 'stream.paused' = ANY(w.events)
 WHERE s.id = :stream_id
   FOR KEY SHARE OF w
""")


def stream_paused(conn: Connection, stream_id: UUID, event_id: UUID) -> None:
    """After the statement that paused the stream, in its transaction."""
    conn.execute(_STREAM_PAUSED, {"stream_id": stream_id, "event_id": event_id})


_SCHEDULE_MISSED = sa.text("""
WITH events AS MATERIALIZED (
    SELECT gen_random_uuid() AS event_id, s.workspace_id,
           jsonb_build_object('stream', runway_stream_json(to_jsonb(s)),
                              'tick', runway_tick_json(to_jsonb(t))) AS payload
      FROM schedule_ticks t JOIN research_streams s ON s.id = t.stream_id
     WHERE t.id = ANY(CAST(:tick_ids AS bigint[])) AND t.outcome = 'missed'
       AND EXISTS (SELECT 1 FROM webhooks w WHERE w.workspace_id = s.workspace_id))
INSERT INTO webhook_deliveries (webhook_id, event_id, type, payload)
SELECT w.id, events.event_id, 'schedule.missed', events.payload
  FROM events
  JOIN webhooks w ON w.workspace_id = events.workspace_id AND 'schedule.missed' = ANY(w.events)
   FOR KEY SHARE OF w
""")


def schedule_missed(conn: Connection, tick_ids: Sequence[int]) -> None:
    """After the statement that recorded the ticks, in its transaction."""
    if tick_ids:
        conn.execute(_SCHEDULE_MISSED, {"tick_ids": list(tick_ids)})


# The late pass: scheduled runs still pending `late_after_seconds` after their slot, in
# workspaces with a webhook for `run.late`, each marked once (late_at) in the statement that
# writes its event. Pending runs are few and found along the index on live runs; rows a
# claim holds are skipped (it is starting).
_LATE = sa.text("""
WITH candidates AS (
    SELECT p.id FROM pipeline_executions p JOIN research_streams s ON s.id = p.stream_id
     WHERE p.status = 'pending' AND p.run_type = 'scheduled' AND p.late_at IS NULL
       AND jsonb_typeof(s.schedule_config -> 'late_after_seconds') = 'number'
       AND EXISTS (SELECT 1 FROM webhooks w
                    WHERE w.workspace_id = p.workspace_id AND 'run.late' = ANY(w.events))
       AND p.scheduled_for < now() - make_interval(
               secs => (s.schedule_config ->> 'late_after_seconds')::float8)
     ORDER BY p.scheduled_for
     LIMIT :limit
       FOR UPDATE OF p SKIP LOCKED),
late AS (
    UPDATE pipeline_executions p SET late_at = now()
      FROM candidates, research_streams s
     WHERE p.id = candidates.id AND s.id = p.stream_id
       AND p.status = 'pending' AND p.late_at IS NULL
    RETURNING p.workspace_id,
              jsonb_build_object('run', runway_run_json(to_jsonb(p)),
                                 'stream', runway_stream_json(to_jsonb(s)),
                                 'late_after_seconds',
                                 s.schedule_config -> 'late_after_seconds') AS payload),
events AS MATERIALIZED (
    SELECT gen_random_uuid() AS event_id, late.* FROM late),
written AS (
    INSERT INTO webhook_deliveries (webhook_id, event_id, type, payload)
    SELECT w.id, events.event_id, 'run.late', events.payload
      FROM events
      JOIN webhooks w ON w.workspace_id = events.workspace_id AND 'run.late' = ANY(w.events)
       FOR KEY SHARE OF w
    RETURNING 1)
SELECT count(*) FROM events
""")


def mark_late(conn: Connection, limit: int) -> int:
    """Find up to `limit` late scheduled runs and write their `run.late`; how many."""
    return int(conn.execute(_LATE, {"limit": limit}).scalar_one())
