"""Scheduling at scale: N streams on staggered 60 s intervals, `builtin.noop`.

    .venv/bin/python -m bench.schedule_lag [--streams 100000] [--minutes 2] [--workers 0]
                                           [--phases beat,two-beats,floor]

Each phase starts from the same throwaway database `runway_bench_schedule` (the streams'
first slots spread over the first minute) and runs for `--minutes`; over the slots that
came due after a warm-up minute it reports:
  - runs created; slots not fired (ticks other than `fired`); streams overdue at the end
    (a slot due more than a second before, not handled yet); times beat lost its lead;
  - lag from `scheduled_for` to the run's creation (the scheduler's part) and to
    `started_at` (with workers: the queue and the worker too), p50 / p99 / max;
  - the CPU share (of one core) of each scheduler process and of all Postgres processes,
    the scheduler's CPU per run created, and its resident memory when measuring began and
    when it ended (start>end).
Phases: `beat`, Runway's beat alone; `two-beats`, two beats sharing the ticking; `floor`,
bench/floor_beat.py, the same SQL and one LPUSH per run with nothing else.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
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
from bench.proc import cpu_seconds, resident_mib, stop, tree  # noqa: E402

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
    name = command[3] if len(command) > 3 else command[-1]
    path = LOGS / f"{name}-{len(list(LOGS.iterdir()))}.log"
    log = path.open("wb")
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    child.log_path = path  # type: ignore[attr-defined]
    try:
        yield child
    finally:
        stop(child)


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


def lost_leads(path: Path) -> int:
    return path.read_text(errors="replace").count("lost the lead")


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}s"


@dataclass
class Phase:
    name: str
    report: dict[str, float]
    wall: float
    schedulers: list[float]  # CPU share of one core, each beat (or the floor)
    postgres: float
    workers: float
    overdue: int
    lost: int
    resident_before: list[float]  # MiB, each beat (or the floor), when measuring began
    resident: list[float]  # and when it ended

    @property
    def cpu_ms_per_run(self) -> float:
        runs = self.report["runs"] or 1
        return 10 * sum(self.schedulers) * self.wall / runs


def measure(args: argparse.Namespace, name: str, beats: int) -> Phase:
    """One phase: `beats` Runway beats (0: the floor's scheduler) and the workers."""
    prepare(args.streams, args.overlap)
    venv = Path(sys.executable).parent
    celery = str(venv / "celery")
    with ExitStack() as stack:
        if beats:
            schedulers = [
                stack.enter_context(process(celery, "-A", "app", "beat", "--loglevel", "WARNING"))
                for _ in range(beats)
            ]
        else:
            floor = (str(venv / "python"), "-m", "bench.floor_beat")
            schedulers = [stack.enter_context(process(*floor))]
        workers = [
            stack.enter_context(
                process(
                    celery,
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
        groups = [{scheduler.pid} for scheduler in schedulers] + [pg, worker_pids]
        before = [cpu_seconds(group) for group in groups]
        resident_before = [resident_mib(scheduler.pid) for scheduler in schedulers]
        time.sleep(args.minutes * 60 - WARM_UP_SECONDS)
        after = [cpu_seconds(group) for group in groups]
        ended = time.time()
        behind = overdue(ended)
        resident = [resident_mib(scheduler.pid) for scheduler in schedulers]
        time.sleep(5)  # let the last slots' runs start before measuring them
    wall = ended - started
    shares = [100 * (b - a) / wall for a, b in zip(before, after, strict=True)]
    lost = sum(lost_leads(scheduler.log_path) for scheduler in schedulers) if beats else 0
    report = lag_report(started, ended)
    return Phase(
        name,
        report,
        wall,
        shares[:-2],
        shares[-2],
        shares[-1],
        behind,
        lost,
        resident_before,
        resident,
    )


def print_phases(args: argparse.Namespace, phases: list[Phase]) -> None:
    print(
        f"streams: {args.streams} on 60 s intervals (overlap {args.overlap}); each phase"
        f" measured {phases[0].wall:.0f}s after a {WARM_UP_SECONDS}s warm-up;"
        f" {args.workers} worker process(es) at -c 2"
    )
    header = (
        f"{'':<10} {'runs':>7} {'unfired':>7} {'overdue':>7} {'lost lead':>9}"
        f" {'created p50':>11} {'p99':>7} {'max':>7} {'started p99':>11}"
        f" {'CPU % of a core':>20} {'postgres':>8} {'ms CPU/run':>10} {'RSS MiB':>14}"
    )
    print(header)
    for phase in phases:
        report = phase.report
        cpu = " + ".join(f"{share:.1f}" for share in phase.schedulers)
        rss = " + ".join(
            f"{before:.0f}>{after:.0f}"
            for before, after in zip(phase.resident_before, phase.resident, strict=True)
        )
        print(
            f"{phase.name:<10} {report['runs']:>7} {report['not_fired']:>7} {phase.overdue:>7}"
            f" {phase.lost:>9} {seconds(report['create_p50']):>11}"
            f" {seconds(report['create_p99']):>7} {seconds(report['create_max']):>7}"
            f" {seconds(report['start_p99']):>11} {cpu:>20} {phase.postgres:>7.1f}%"
            f" {phase.cpu_ms_per_run:>10.3f} {rss:>14}"
        )
    floor = next((phase for phase in phases if phase.name == "floor"), None)
    if floor is not None:
        for phase in phases:
            if phase is not floor:
                print(
                    f"{phase.name}: {phase.cpu_ms_per_run / floor.cpu_ms_per_run:.2f} x the"
                    " floor's CPU per run created"
                )


PHASES = {"beat": 1, "two-beats": 2, "floor": 0}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=100_000)
    parser.add_argument("--minutes", type=float, default=2, help="per phase, warm-up included")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (-c 2 each)")
    parser.add_argument(
        "--overlap", choices=["skip", "allow"], default="allow", help="the streams' overlap policy"
    )
    parser.add_argument(
        "--phases",
        default="beat,two-beats,floor",
        help=f"comma-separated, in order, of: {', '.join(PHASES)}",
    )
    args = parser.parse_args()
    names = args.phases.split(",")
    unknown = set(names) - set(PHASES)
    if unknown:
        parser.error(f"--phases: unknown {', '.join(sorted(unknown))}")
    print_phases(args, [measure(args, name, PHASES[name]) for name in names])


if __name__ == "__main__":
    main()
