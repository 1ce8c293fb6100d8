"""A scrape costs the same for a thousand runs as for a million: /metrics and /status timed.

    .venv/bin/python -m bench.metrics_scrape [--small 1000] [--large 1000000] [--samples 50]

Fills one workspace with `--small` runs, then (one INSERT ... SELECT generate_series, the
tally triggers counting them) up to `--large`, and at each size times, median of
`--samples` calls: GET /metrics and GET /status through the API (in process, real key),
monitoring.status() alone, and for contrast the scan that /status used to make
(store.counts_by_status). Checks that the tallies equal the rows by status. Uses a
throwaway database `runway_bench_scrape`.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/runway_bench_scrape"
)

import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.main import create_app
from app import db, monitoring, schema, workspaces
from app.runs import store
from app.settings import get_settings

STATUSES = "ARRAY['pending','running','retrying','completed','failed','cancelled']"
_FILL = f"""
INSERT INTO pipeline_executions (workspace_id, stream_id, run_type, pipeline, max_attempts,
    attempt, status, scheduled_for, started_at, completed_at)
SELECT :ws, gen_random_uuid(), 'scheduled', 'builtin.noop', 3, 1,
       ({STATUSES})[1 + g % 6], now() - make_interval(secs => g + 2),
       now() - make_interval(secs => g), now() - make_interval(secs => g) + interval '3 s'
  FROM generate_series(CAST(:first AS int), CAST(:last AS int)) g"""


def prepare() -> tuple[UUID, str]:
    url = get_settings().database_url
    schema.ensure_database(url)
    schema.migrate(url)
    with db.unit_of_work() as conn:
        conn.execute(sa.text("TRUNCATE pipeline_executions, api_keys, workspaces CASCADE"))
    workspace_id, key = workspaces.create_key("bench", "bench")
    return workspace_id, key


def fill(workspace_id: UUID, first: int, last: int) -> float:
    begun = time.perf_counter()
    with db.unit_of_work() as conn:
        conn.execute(sa.text(_FILL), {"ws": workspace_id, "first": first, "last": last})
    elapsed = time.perf_counter() - begun
    with db.engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE pipeline_executions"))
    return elapsed


def median_ms(call: Callable[[], Any], samples: int) -> float:
    call()  # warm
    times = []
    for _ in range(samples):
        begun = time.perf_counter()
        call()
        times.append(time.perf_counter() - begun)
    return statistics.median(times) * 1000


def measure(client: TestClient, key: str, workspace_id: UUID, samples: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}"}

    def scan() -> None:
        with db.unit_of_work() as conn:
            store.counts_by_status(conn, workspace_id)

    def get(path: str) -> Callable[[], None]:
        return lambda: client.get(path, headers=headers).raise_for_status() and None

    return {
        "GET /metrics": median_ms(get("/metrics"), samples),
        "GET /status (route)": median_ms(get("/status"), samples),
        "monitoring.status()": median_ms(lambda: monitoring.status(workspace_id), samples),
        "old scan (counts_by_status)": median_ms(scan, max(3, samples // 10)),
    }


def check_tallies(workspace_id: UUID) -> None:
    counts = monitoring.status(workspace_id).counts
    with db.unit_of_work() as conn:
        rows = store.counts_by_status(conn, workspace_id)
    assert counts == {status: rows.get(status, 0) for status in counts}, (counts, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=50)
    arguments = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    workspace_id, key = prepare()
    results: dict[int, dict[str, float]] = {}
    with TestClient(create_app()) as client:
        for first, last in ((1, arguments.small), (arguments.small + 1, arguments.large)):
            seconds = fill(workspace_id, first, last)
            print(f"inserted {last - first + 1} runs in {seconds:.1f} s (triggers counting)")
            check_tallies(workspace_id)
            results[last] = measure(client, key, workspace_id, arguments.samples)
    small, large = results[arguments.small], results[arguments.large]
    print(f"median ms   {arguments.small:>10} runs {arguments.large:>10} runs   ratio")
    for name in small:
        print(f"{name:28} {small[name]:10.2f} {large[name]:15.2f} {large[name] / small[name]:7.2f}")
    print("tallies equal the rows by status at both sizes")
    db.dispose()


if __name__ == "__main__":
    main()
