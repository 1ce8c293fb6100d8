"""The floor for beat: the least a scheduler can do for streams on fixed intervals, to set
beside Runway's beat in `bench.schedule_lag`.

    DATABASE_URL=... REDIS_URL=... .venv/bin/python -m bench.floor_beat

One transaction a batch, as Runway's ticker does: lock up to 1,000 due streams (FOR UPDATE
SKIP LOCKED), insert their runs and their ticks and advance the streams, one statement each,
then commit and LPUSH one message of a Celery task's size per run in one pipeline. No
planning (every stream is an interval stream that fires), no ORM, no Celery: psycopg and
redis-py only. Between batches it sleeps until the next stream is due, from 0.2 to 1 s.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

import psycopg
import redis

BATCH = 1000
QUEUE = os.environ.get("RUNWAY_QUEUE_PREFIX", "bench-schedule") + ".runs"

CLAIM = """
SELECT id, workspace_id, pipeline, params, next_scheduled_run,
       (schedule_config ->> 'interval_seconds')::int AS every
  FROM research_streams
 WHERE next_scheduled_run <= statement_timestamp()
 ORDER BY next_scheduled_run LIMIT %s FOR UPDATE SKIP LOCKED
"""
INSERT_RUNS = """
INSERT INTO pipeline_executions (id, workspace_id, stream_id, run_type, scheduled_for,
                                 pipeline, params, max_attempts)
SELECT r.id, r.workspace_id, r.stream_id, 'scheduled', r.slot, r.pipeline, r.params, 3
  FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::timestamptz[], %s::text[],
              %s::jsonb[]) AS r(id, workspace_id, stream_id, slot, pipeline, params)
    ON CONFLICT (stream_id, scheduled_for) WHERE run_type = 'scheduled' DO NOTHING
"""
INSERT_TICKS = """
INSERT INTO schedule_ticks (stream_id, scheduled_for, outcome, execution_id)
SELECT t.stream_id, t.slot, 'fired', t.run_id
  FROM unnest(%s::uuid[], %s::timestamptz[], %s::uuid[]) AS t(stream_id, slot, run_id)
    ON CONFLICT (stream_id, scheduled_for) DO NOTHING
"""
ADVANCE = """
UPDATE research_streams s
   SET next_scheduled_run = s.next_scheduled_run + make_interval(secs => m.every),
       last_scheduled_run = s.next_scheduled_run, updated_at = now()
  FROM unnest(%s::uuid[], %s::int[]) AS m(id, every)
 WHERE s.id = m.id
"""
NEXT_DUE = (
    "SELECT extract(epoch FROM min(next_scheduled_run) - statement_timestamp())"
    " FROM research_streams"
)


def message(run_id: str) -> bytes:
    """A message the size of the one Runway publishes for a run (about 1.3 KB)."""
    return json.dumps({"id": run_id, "args": [run_id], "padding": "x" * 1200}).encode()


def batch(conn: psycopg.Connection[Any], client: redis.Redis) -> int:
    with conn.transaction():
        due = conn.execute(CLAIM, (BATCH,)).fetchall()
        if not due:
            return 0
        run_ids = [uuid.uuid4() for _ in due]
        streams = [row[0] for row in due]
        slots = [row[4] for row in due]
        params = [json.dumps(row[3]) for row in due]
        conn.execute(
            INSERT_RUNS,
            (run_ids, [row[1] for row in due], streams, slots, [row[2] for row in due], params),
        )
        conn.execute(INSERT_TICKS, (streams, slots, run_ids))
        conn.execute(ADVANCE, (streams, [row[5] for row in due]))
    with client.pipeline(transaction=False) as pipe:
        for run_id in run_ids:
            pipe.lpush(QUEUE, message(str(run_id)))
        pipe.execute()
    return len(due)


def main() -> None:
    url = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    with psycopg.connect(url) as conn:
        while True:
            if batch(conn, client) == BATCH:
                continue
            with conn.transaction():
                until = conn.execute(NEXT_DUE).fetchone()
            wait = 1.0 if until is None or until[0] is None else float(until[0])
            time.sleep(min(1.0, max(0.2, wait)))


if __name__ == "__main__":
    main()
