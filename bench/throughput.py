"""Throughput of the run hot path against bare Celery, on one worker at concurrency 2.

    .venv/bin/python -m bench.throughput [--runs 5000] [--latency-samples 200]

Phases, all drained by the same worker process (prefork, -c 2, the project's settings):
  1. Runway: N pending `builtin.noop` runs (rows committed beforehand, messages queued).
  2. Runway, limited: the same, of a stream naming a limit key whose cap (a million) is never
     reached: each run is claimed through the gate and its end releases the key.
  3. floor: N bare Celery tasks that each make as many durable Postgres commits as a run's
     hot path makes (claim, final write: 2).
  Phases 1 to 3 alternate, `--rounds` times each (so that a change in the machine's load
  touches all three alike); their medians are compared.
  4. ceiling: N bare Celery no-op tasks.
Each phase's messages are queued while the worker is not consuming them; the clock starts
when the worker is told to consume and stops when the last message has run. Then, on an idle
worker, the latency from POST /runs (through the real API over HTTP) to the run's `running`.
Uses a throwaway database `runway_bench` and its own queue names; Redis db from REDIS_URL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

HOT_PATH_COMMITS = 2
PREFIX = "bench"
os.environ["RUNWAY_QUEUE_PREFIX"] = PREFIX
os.environ.setdefault("RUNWAY_LOG_FORMAT", "console")
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/runway_bench"
)

import httpx  # noqa: E402
import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from app import app, db, workspaces  # noqa: E402
from app.limits import gate  # noqa: E402
from app.limits import service as limits  # noqa: E402
from app.models import pipeline_executions  # noqa: E402
from app.runs import dispatch  # noqa: E402
from app.settings import get_settings  # noqa: E402
from bench import database  # noqa: E402
from bench.tasks import DONE_KEY  # noqa: E402

IDLE_QUEUE = f"{PREFIX}.idle"
BARE_QUEUE = f"{PREFIX}.bare"


@contextmanager
def process(*command: str) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()


def wait(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"bench: timed out waiting for {what}")
        time.sleep(poll)


def worker_ready() -> bool:
    replies = app.control.ping(timeout=0.5)
    return bool(replies)


def drain(queue: str, done: Callable[[], bool]) -> float:
    """Let the worker consume `queue`; seconds until `done()`."""
    started = time.perf_counter()
    app.control.add_consumer(queue, reply=False)
    wait(done, 600, f"{queue} to drain", poll=0.002)
    elapsed = time.perf_counter() - started
    app.control.cancel_consumer(queue, reply=True, timeout=5)
    return elapsed


def make_stream(key: str, name: str = "bench", limit_keys: tuple[str, ...] = ()) -> str:
    with httpx.Client(base_url="http://127.0.0.1:8765", headers=auth(key)) as client:
        body = {"name": name, "pipeline": "builtin.noop"}
        stream_id: str = client.post("/streams", json=body).raise_for_status().json()["id"]
    if limit_keys:  # set in SQL: the bench measures runs, not the streams API
        with db.unit_of_work() as conn:
            conn.execute(
                sa.text("UPDATE research_streams SET limit_keys = :keys WHERE id = :id"),
                {"keys": list(limit_keys), "id": stream_id},
            )
    return stream_id


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def completed_count() -> int:
    with db.unit_of_work() as conn:
        statement = sa.select(sa.func.count()).where(pipeline_executions.c.status == "completed")
        return int(conn.execute(statement).scalar_one())


def clear_runs() -> None:
    """Delete the phase's runs, then vacuum what the phase left dead, as autovacuum would
    between phases. Without it (autovacuum may be off on a test machine) each phase runs on
    the dead rows of all before it: the tallies' few hot rows and the runs' indexes grow
    with every claim and end, and a later phase's hot path is several times slower."""
    with db.unit_of_work() as conn:
        conn.execute(sa.text("DELETE FROM pipeline_executions"))
    with db.engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM pipeline_executions, run_tallies, limits, bench_rows"))


def runway_phase(stream_id: str, runs: int, client: redis.Redis) -> float:
    """Runs created as the API creates them: ungated ones published, gated ones parked and
    let go by one release (the key's cap is never reached)."""
    with db.unit_of_work() as conn:
        rows = conn.execute(
            sa.text(
                "INSERT INTO pipeline_executions (workspace_id, stream_id, run_type, pipeline,"
                "  max_attempts, limit_keys, gated, waiting_for)"
                " SELECT workspace_id, id, 'manual', pipeline, 3, limit_keys,"
                "  cardinality(limit_keys) > 0,"
                "  CASE WHEN cardinality(limit_keys) > 0 THEN jsonb_build_object("
                "    'kind', 'concurrency', 'key', limit_keys[1], 'until', NULL) END"
                " FROM research_streams, generate_series(1, :n)"
                " WHERE id = :stream RETURNING id, workspace_id, limit_keys"
            ),
            {"n": runs, "stream": stream_id},
        ).all()
    if rows[0].limit_keys:
        assert gate.release(rows[0].workspace_id, rows[0].limit_keys) == runs
    else:
        assert dispatch.publish_many(row.id for row in rows) == runs
    client.delete(DONE_KEY)
    # The lowest priority step: the mark runs after every run (normal runs go to step 3).
    app.signature("bench.mark").apply_async(queue=get_settings().runs_queue, priority=9)
    elapsed = drain(get_settings().runs_queue, lambda: client.exists(DONE_KEY) == 1)
    wait(lambda: completed_count() == runs, 30, "every run to complete")
    return elapsed


def bare_phase(runs: int, signature: Callable[[int], Any], client: redis.Redis) -> float:
    client.delete(DONE_KEY)
    with app.producer_or_acquire() as producer:
        for index in range(runs):
            signature(index).apply_async(queue=BARE_QUEUE, producer=producer)
        app.signature("bench.mark").apply_async(queue=BARE_QUEUE, producer=producer)
    return drain(BARE_QUEUE, lambda: client.exists(DONE_KEY) == 1)


def commits(index: int) -> Any:
    """A floor task: the hot path's commits, each on one of 100 rows."""
    return app.signature("bench.commits", args=(index % 100, HOT_PATH_COMMITS))


def latency(key: str, stream_id: str, samples: int) -> tuple[list[float], list[float]]:
    """Per run: DB created_at -> started_at, and the client's POST /runs round trip (ms)."""
    to_running, round_trips = [], []
    with httpx.Client(base_url="http://127.0.0.1:8765", headers=auth(key)) as client:
        for _ in range(samples):
            sent = time.perf_counter()
            run = client.post("/runs", json={"stream_id": stream_id}).raise_for_status().json()
            round_trips.append((time.perf_counter() - sent) * 1000)
            row = wait_row_started(run["id"])
            to_running.append((row.started_at - row.created_at).total_seconds() * 1000)
            time.sleep(0.02)
    return to_running, round_trips


def wait_row_started(run_id: str) -> Any:
    holder: list[Any] = []

    def started() -> bool:
        with db.unit_of_work() as conn:
            row = conn.execute(
                sa.select(pipeline_executions).where(pipeline_executions.c.id == run_id)
            ).one()
        holder[:] = [row]
        return row.started_at is not None

    wait(started, 30, f"run {run_id} to start")
    return holder[0]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def clear_queues(client: redis.Redis) -> None:
    for queue in (get_settings().runs_queue, BARE_QUEUE, IDLE_QUEUE):
        client.delete(*dispatch.queue_lists(queue))


def worker_command() -> list[str]:
    """One worker process, prefork at concurrency 2, consuming nothing until told to."""
    venv = os.path.dirname(sys.executable)
    return [
        f"{venv}/celery",
        "-A",
        "app",
        "worker",
        "--pool",
        "prefork",
        "-c",
        "2",
        "-Q",
        IDLE_QUEUE,
        "--include",
        "bench.tasks",
        "--without-gossip",
        "--without-mingle",
        "-n",
        f"bench@{os.uname().nodename}",
        "--loglevel",
        "WARNING",
    ]


def api_command() -> list[str]:
    venv = os.path.dirname(sys.executable)
    return [f"{venv}/uvicorn", "api.main:app", "--port", "8765", "--log-level", "warning"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="of the unlimited/limited pair")
    args = parser.parse_args()

    database.reset()
    client = redis.Redis.from_url(get_settings().redis_url)
    clear_queues(client)
    key = workspaces.create_key("bench")[1]
    workspace_id = workspaces.lookup("bench")
    with process(*worker_command()), process(*api_command()):
        wait(worker_ready, 60, "the worker")
        wait(_health_ok, 60, "the API")
        stream_id = make_stream(key)
        limited_stream = make_stream(key, "bench-limited", ("bench",))
        limits.put(workspace_id, "bench", 1_000_000, None)
        unlimited_rates, limited_rates, floor_rates = [], [], []
        for _ in range(args.rounds):
            for stream, rates in ((stream_id, unlimited_rates), (limited_stream, limited_rates)):
                rates.append(args.runs / runway_phase(stream, args.runs, client))
                clear_runs()
            floor_rates.append(args.runs / bare_phase(args.runs, commits, client))
        runway, limited = statistics.median(unlimited_rates), statistics.median(limited_rates)
        floor = statistics.median(floor_rates)
        ceiling = args.runs / bare_phase(args.runs, lambda i: app.signature("bench.noop"), client)
        app.control.add_consumer(get_settings().runs_queue, reply=True, timeout=5)
        to_running, round_trips = latency(key, stream_id, args.latency_samples)

    print(
        f"runs per phase: {args.runs}; worker: prefork -c 2; hot-path commits: {HOT_PATH_COMMITS}"
    )
    print(f"Runway (builtin.noop runs)     {runway:8.0f} runs/s  (median of {args.rounds})")
    print(f"Runway, limit key never full   {limited:8.0f} runs/s  (median of {args.rounds})")
    print(f"  limited / unlimited  {limited / runway:.2f}")
    print(f"bare Celery no-op (ceiling)    {ceiling:8.0f} tasks/s")
    print(
        f"bare Celery + {HOT_PATH_COMMITS} commits (floor) {floor:8.0f} tasks/s"
        f"  (median of {args.rounds})"
    )
    rounds = _ratios(unlimited_rates, floor_rates)
    print(f"Runway / floor  {runway / floor:.2f}  (round by round: {rounds})")
    print(f"Runway / bare   {runway / ceiling:.2f}")
    print(
        f"POST /runs -> running, idle worker, {len(to_running)} runs: "
        f"p50 {statistics.median(to_running):.1f} ms, p99 {percentile(to_running, 0.99):.1f} ms "
        f"(POST round trip p50 {statistics.median(round_trips):.1f} ms)"
    )


def _ratios(rates: list[float], floors: list[float]) -> str:
    return ", ".join(f"{rate / floor:.2f}" for rate, floor in zip(rates, floors, strict=True))


def _health_ok() -> bool:
    try:
        return httpx.get("http://127.0.0.1:8765/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
