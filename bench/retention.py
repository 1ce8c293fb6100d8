"""Retention at scale: how fast a purge deletes, and how long its longest batch holds locks.

    .venv/bin/python -m bench.retention [--runs 1000000] [--ticks 1000000] [--batch 5000]

Fills a throwaway database `runway_bench_retention` with ended runs and schedule ticks 40
days old (one INSERT ... SELECT generate_series each, then ANALYZE, as autovacuum would),
purges them with RUNWAY_RETENTION_DAYS=30, and reports, per table and in all: rows deleted,
seconds, rows per second, batches, and the median and longest batch (each batch is one
transaction, so the longest batch is the longest any lock is held).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("RUNWAY_LOG_FORMAT", "console")
os.environ["RUNWAY_RETENTION_DAYS"] = "30"
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_RETENTION_DATABASE_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/runway_bench_retention",
)

import sqlalchemy as sa

from app import db, retention, schema
from app.settings import get_settings

_FILL_RUNS = """
INSERT INTO pipeline_executions (workspace_id, stream_id, run_type, status, pipeline,
                                 max_attempts, attempt, created_at, started_at, completed_at)
SELECT :workspace, :stream, 'scheduled', (ARRAY['completed', 'failed', 'cancelled'])[g % 3 + 1],
       'builtin.noop', 3, 1, t, t, t
  FROM generate_series(1, :n) g,
       LATERAL (SELECT now() - interval '40 days' - g * interval '1 ms' AS t) at
"""
_FILL_TICKS = """
INSERT INTO schedule_ticks (stream_id, scheduled_for, outcome, execution_id, created_at)
SELECT :stream, t, 'fired', gen_random_uuid(), t
  FROM generate_series(1, :n) g,
       LATERAL (SELECT now() - interval '40 days' - g * interval '1 ms' AS t) at
"""


def prepare(runs: int, ticks: int) -> None:
    schema.migrate(get_settings().database_url)
    with db.unit_of_work() as conn:
        conn.execute(sa.text("TRUNCATE workspaces, research_streams, pipeline_executions CASCADE"))
        workspace = conn.execute(
            sa.text("INSERT INTO workspaces (name) VALUES ('bench') RETURNING id")
        ).scalar_one()
        stream = conn.execute(
            sa.text(
                "INSERT INTO research_streams (workspace_id, name, pipeline)"
                " VALUES (:workspace, 'bench', 'builtin.noop') RETURNING id"
            ),
            {"workspace": workspace},
        ).scalar_one()
        values = {"workspace": workspace, "stream": stream}
        conn.execute(sa.text(_FILL_RUNS), {**values, "n": runs})
        conn.execute(sa.text(_FILL_TICKS), {**values, "n": ticks})
    with db.engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE pipeline_executions, schedule_ticks"))


def report(purge: retention.RetentionReport) -> None:
    print(
        f"{'table':<22}{'rows':>10}{'seconds':>9}{'rows/s':>10}{'batches':>9}"
        f"{'median ms':>11}{'max ms':>9}"
    )
    for purged in purge.purged:
        seconds = sum(purged.batches)
        _line(purged.table, purged.deleted, seconds, purged.batches)
    every = [batch for purged in purge.purged for batch in purged.batches]
    _line("all (wall clock)", purge.deleted, purge.seconds, every)
    print(f"finished: {purge.finished}")


def _line(name: str, rows: int, seconds: float, batches: tuple[float, ...] | list[float]) -> None:
    median = statistics.median(batches) * 1000 if batches else 0.0
    longest = max(batches, default=0.0) * 1000
    rate = rows / seconds if seconds else 0.0
    print(
        f"{name:<22}{rows:>10}{seconds:>9.2f}{rate:>10.0f}{len(batches):>9}"
        f"{median:>11.1f}{longest:>9.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=retention.BATCH)
    arguments = parser.parse_args()
    started = time.monotonic()
    prepare(arguments.runs, arguments.ticks)
    print(
        f"filled {arguments.runs} runs and {arguments.ticks} ticks in "
        f"{time.monotonic() - started:.1f}s"
    )
    report(retention.purge(batch_size=arguments.batch, budget_seconds=3600))


if __name__ == "__main__":
    main()
