"""Scheduling lag at scale: N streams on staggered 60 s intervals, `builtin.noop`.

    .venv/bin/python -m bench.schedule_lag [--streams 10000] [--minutes 3] [--workers 1]

Runs a real beat and worker(s) against a throwaway database `runway_bench_schedule` for the
given time, then reports, over the slots that came due after a warm-up minute:
  - lag from `scheduled_for` to the run's creation (beat's part) and to `started_at`
    (end to end, including the queue and the worker), p50 / p99 / max;
  - missed or skipped slots;
  - the CPU share (of one core) of beat, of all Postgres processes, and of the workers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

PREFIX = "bench-schedule"
os.environ["RUNWAY_QUEUE_PREFIX"] = PREFIX
os.environ.setdefault("RUNWAY_LOG_FORMAT", "console")
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_SCHEDULE_DATABASE_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/runway_bench_schedule",
)

import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from app import db, schema, workspaces  # noqa: E402
from app.settings import get_settings  # noqa: E402

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
WARM_UP_SECONDS = 60


def prepare(streams: int, overlap: str) -> None:
    url = get_settings().database_url
    schema.migrate(url)
    with db.unit_of_work() as conn:
        conn.execute(
            sa.text(
                "TRUNCATE pipeline_executions, schedule_ticks, research_streams, "
                "api_keys, workspaces CASCADE"
            )
        )
    workspace_id, _ = workspaces.create_key("bench")
    with db.unit_of_work() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO research_streams (workspace_id, name, pipeline, schedule_config,"
                " next_scheduled_run)"
                " SELECT :ws, 'stream ' || g, 'builtin.noop',"
                " jsonb_build_object('enabled', true, 'interval_seconds', 60, 'cron', null,"
                " 'timezone', 'UTC', 'overlap', CAST(:overlap AS text), 'misfire', 'run_once',"
                " 'pause_after_failures', null),"
                " now() + interval '5 seconds' + (g * 60.0 / :n) * interval '1 second'"
                " FROM generate_series(0, :n - 1) g"
            ),
            {"ws": workspace_id, "n": streams, "overlap": overlap},
        )
        conn.execute(sa.text("ANALYZE"))
    client = redis.Redis.from_url(get_settings().redis_url)
    for key in client.scan_iter(f"{PREFIX}*"):
        client.delete(key)


LOGS = Path("/tmp/runway-bench-logs")


@contextmanager
def process(*command: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start a Runway process; its output goes to a log file under /tmp/runway-bench-logs."""
    LOGS.mkdir(exist_ok=True)
    path = LOGS / f"{command[3]}-{len(list(LOGS.iterdir()))}.log"
    log = path.open("wb")
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    child.log_path = path  # type: ignore[attr-defined]
    try:
        yield child
    finally:
        os.killpg(child.pid, 15)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, 9)


def cpu_seconds(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS_PER_SECOND


def tree(root: int) -> set[int]:
    found, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for child in Path(f"/proc/{parent}/task").glob("*/children"):
            for pid in child.read_text().split():
                found.add(int(pid))
                frontier.append(int(pid))
    return found


def postgres_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip().startswith("postgres"):
                    pids.add(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return pids


def lag_report(since: float, until: float) -> dict[str, float]:
    with db.unit_of_work() as conn:
        row = conn.execute(
            sa.text(
                "SELECT count(*) AS runs,"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY created) AS create_p50,"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY created) AS create_p99,"
                " max(created) AS create_max,"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY started) AS start_p50,"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY started) AS start_p99,"
                " max(started) AS start_max, count(*) FILTER (WHERE started IS NULL) AS unstarted"
                " FROM (SELECT extract(epoch FROM created_at - scheduled_for) AS created,"
                " extract(epoch FROM started_at - scheduled_for) AS started"
                " FROM pipeline_executions WHERE scheduled_for BETWEEN to_timestamp(:a)"
                " AND to_timestamp(:b)) lags"
            ),
            {"a": since, "b": until},
        ).one()
        other = conn.execute(
            sa.text(
                "SELECT count(*) FILTER (WHERE outcome <> 'fired') FROM schedule_ticks"
                " WHERE scheduled_for BETWEEN to_timestamp(:a) AND to_timestamp(:b)"
            ),
            {"a": since, "b": until},
        ).scalar_one()
    return {**row._asdict(), "not_fired": other}


def overdue(at: float) -> int:
    """Streams with a slot that came due more than a second before `at` and is not handled."""
    with db.unit_of_work() as conn:
        return conn.execute(
            sa.text(
                "SELECT count(*) FROM research_streams"
                " WHERE next_scheduled_run < to_timestamp(:at) - interval '1 second'"
            ),
            {"at": at},
        ).scalar_one()


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def lost_leads(path: Path) -> int:
    return path.read_text(errors="replace").count("lost the lead")


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}s"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (-c 2 each)")
    parser.add_argument(
        "--overlap", choices=["skip", "allow"], default="skip", help="the streams' overlap policy"
    )
    args = parser.parse_args()

    prepare(args.streams, args.overlap)
    venv = Path(sys.executable).parent
    with ExitStack() as stack:
        beat = stack.enter_context(
            process(str(venv / "celery"), "-A", "app", "beat", "--loglevel", "WARNING")
        )
        workers = [
            stack.enter_context(
                process(
                    str(venv / "celery"),
                    "-A",
                    "app",
                    "worker",
                    "-c",
                    "2",
                    "--loglevel",
                    "WARNING",
                    "-n",
                    f"lag{index}@%h",
                    "--without-gossip",
                    "--without-mingle",
                )
            )
            for index in range(args.workers)
        ]
        time.sleep(WARM_UP_SECONDS)  # a benchmark's warm-up, not a test's wait
        pg, started = postgres_pids(), time.time()
        worker_pids = set().union(*(tree(worker.pid) for worker in workers))
        before = (cpu_seconds({beat.pid}), cpu_seconds(pg), cpu_seconds(worker_pids))
        time.sleep(args.minutes * 60 - WARM_UP_SECONDS)
        after = (cpu_seconds({beat.pid}), cpu_seconds(pg), cpu_seconds(worker_pids))
        ended = time.time()
        behind, beat_mib = overdue(ended), resident_mib(beat.pid)
        time.sleep(5)  # let the last slots' runs start before measuring them
    wall = ended - started
    lost = lost_leads(beat.log_path)
    report = lag_report(started, ended)
    beat_cpu, pg_cpu, worker_cpu = (
        100 * (b - a) / wall for a, b in zip(before, after, strict=True)
    )
    print(
        f"streams: {args.streams} on 60 s intervals; measured {wall:.0f}s"
        f" after a {WARM_UP_SECONDS}s"
        f" warm-up; {args.workers} worker process(es) at -c 2"
    )
    print(
        f"runs measured: {report['runs']}, slots not fired: {report['not_fired']},"
        f" runs not started: {report['unstarted']}, streams overdue at the end: {behind}"
    )
    print(f"beat: lost the lead {lost} time(s); resident memory {beat_mib:.0f} MiB")
    print(
        f"lag scheduled_for -> created:  p50 {seconds(report['create_p50'])}"
        f"  p99 {seconds(report['create_p99'])}  max {seconds(report['create_max'])}"
    )
    print(
        f"lag scheduled_for -> started:  p50 {seconds(report['start_p50'])}"
        f"  p99 {seconds(report['start_p99'])}  max {seconds(report['start_max'])}"
    )
    print(
        f"CPU (share of one core): beat {beat_cpu:.1f}%, postgres {pg_cpu:.1f}%,"
        f" workers {worker_cpu:.1f}%"
    )


if __name__ == "__main__":
    main()
