"""Server time of every console page, with 10,000 streams and a million runs.

    .venv/bin/python -m bench.console_pages [--streams 10000] [--runs 1000000]

Fills a throwaway database `runway_bench_console` (streams on cron schedules, a few hundred
paused; runs over the last 30 days, mostly completed, some failed, a few pending and
running; ticks, one in a hundred missed), then requests each page in-process (FastAPI's test
client: the time is the server's, no network) and prints the median and the worst of
`--repeat` requests per page.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/runway_bench_console"
)
os.environ.setdefault("RUNWAY_LOG_FORMAT", "console")
os.environ.setdefault("RUNWAY_LOG_LEVEL", "WARNING")

import sqlalchemy as sa
from fastapi.testclient import TestClient

from app import db, schema, workspaces

_STREAMS = """
INSERT INTO research_streams (workspace_id, name, pipeline, params, schedule_config,
                              next_scheduled_run, paused_reason)
SELECT :workspace_id, 'stream ' || g, 'builtin.noop', '{}'::jsonb,
       jsonb_build_object('enabled', g % 20 <> 0, 'cron', (g % 60) || ' * * * *',
                          'timezone', 'Europe/Berlin', 'overlap', 'skip', 'misfire', 'run_once'),
       CASE WHEN g % 20 <> 0 THEN now() + (g % 3600) * interval '1 second' END,
       CASE WHEN g % 40 = 0 THEN 'paused after 3 consecutive failed scheduled runs' END
  FROM generate_series(1, :streams) g
"""
_RUNS = """
INSERT INTO pipeline_executions (workspace_id, stream_id, run_type, status, pipeline,
    max_attempts, attempt, created_at, started_at, completed_at, error)
SELECT :workspace_id, s.ids[1 + g % array_length(s.ids, 1)], 'manual',
       CASE WHEN g <= 20 THEN 'running' WHEN g <= 120 THEN 'pending'
            WHEN g % 50 = 0 THEN 'failed' ELSE 'completed' END,
       'builtin.noop', 3, 1,
       now() - (g * interval '2.5 seconds'),
       CASE WHEN g > 120 OR g <= 20 THEN now() - (g * interval '2.5 seconds') END,
       CASE WHEN g > 120 THEN now() - (g * interval '2.5 seconds') + interval '1 second' END,
       CASE WHEN g > 120 AND g % 50 = 0 THEN 'boom' END
  FROM (SELECT array_agg(id) AS ids FROM research_streams) s, generate_series(1, :runs) g
"""
_TICKS = """
INSERT INTO schedule_ticks (stream_id, scheduled_for, outcome, reason, created_at)
SELECT s.ids[1 + g % array_length(s.ids, 1)], now() - g * interval '1 second',
       CASE WHEN g % 100 = 0 THEN 'missed' ELSE 'fired' END,
       CASE WHEN g % 100 = 0 THEN 'beat was down' END, now() - g * interval '1 second'
  FROM (SELECT array_agg(id) AS ids FROM research_streams) s, generate_series(1, :ticks) g
"""


def fill(streams: int, runs: int) -> str:
    """A workspace of `streams` streams and `runs` runs; its API key."""
    url = os.environ["DATABASE_URL"]
    schema.migrate(url)
    db.init(url)
    with db.unit_of_work() as conn:
        conn.execute(sa.text("TRUNCATE workspaces CASCADE"))
        conn.execute(sa.text("TRUNCATE pipeline_executions, schedule_ticks, run_tallies"))
    workspace_id, key = workspaces.create_key("bench", "console")
    started = time.monotonic()
    with db.unit_of_work() as conn:
        conn.execute(sa.text(_STREAMS), {"workspace_id": workspace_id, "streams": streams})
        conn.execute(sa.text(_RUNS), {"workspace_id": workspace_id, "runs": runs})
        conn.execute(sa.text(_TICKS), {"ticks": runs})
    with db.unit_of_work() as conn:
        conn.execute(sa.text("ANALYZE"))
    print(f"filled in {time.monotonic() - started:.0f} s: {streams} streams, {runs} runs")
    return key


def pages(client: TestClient) -> list[str]:
    with db.unit_of_work() as conn:
        stream = conn.execute(sa.text("SELECT id FROM research_streams LIMIT 1")).scalar()
        run = conn.execute(sa.text("SELECT id FROM pipeline_executions LIMIT 1")).scalar()
    first = client.get("/ui/runs")
    assert first.status_code == 200
    return [
        "/ui",
        "/ui/live/running",
        "/ui/streams",
        "/ui/streams?page=199",
        f"/ui/streams/{stream}",
        "/ui/runs",
        "/ui/runs?status=failed",
        "/ui/runs?status=pending&run_type=scheduled",
        f"/ui/runs?stream_id={stream}",
        f"/ui/runs/{run}",
        f"/ui/runs/{run}/live",
        "/ui/limits",
        "/ui/webhooks",
    ]


def measure(client: TestClient, path: str, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    options = parser.parse_args()
    key = fill(options.streams, options.runs)
    from api.main import create_app

    with TestClient(create_app()) as client:
        client.post("/ui/sign-in", data={"key": key})
        print(f"{'page':45} {'median ms':>10} {'worst ms':>9}")
        for path in pages(client):
            median, worst = measure(client, path, options.repeat)
            print(f"{path[:45]:45} {median:10.1f} {worst:9.1f}")


if __name__ == "__main__":
    main()
