"""Shared by the fault scenarios: queues of their own, making runs, waiting for them to end."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import redis
import sqlalchemy as sa

from app import db
from app.models import pipeline_executions
from app.runs import service
from app.settings import get_settings
from app.states import RunType
from app.streams import service as streams
from tests.fixtures.processes import Process
from tests.fixtures.services import wait_for
from tests.pipelines import (
    RECORD_TABLE,
    Execution,
    executions,
    executions_key,
    finished_key,
    most_at_once,
)

TERMINAL = ("completed", "failed", "cancelled")

# The test timings (tests/conftest.py): heartbeat 1 s, lease 5 s, sweep 2 s, retries <= 2 s.
_settings = get_settings()
HEARTBEAT = _settings.heartbeat_seconds
LEASE = _settings.lease_seconds
SWEEP = _settings.sweep_seconds
RETRY_MAX = _settings.retry_max_seconds
LEASE_AND_SWEEP = LEASE + SWEEP


def rows(run_ids: list[UUID]) -> list[Any]:
    with db.unit_of_work() as conn:
        return list(
            conn.execute(
                sa.select(pipeline_executions).where(pipeline_executions.c.id.in_(run_ids))
            )
        )


def count(run_ids: list[UUID], *statuses: str) -> int:
    return sum(1 for row in rows(run_ids) if row.status in statuses)


@dataclass(frozen=True)
class Settled:
    rows: list[Any]
    seconds: float
    bound: float  # the seconds the scenario allows for every run to end
    lost: int  # runs that never reached a terminal state
    twice: int  # runs whose pipeline finished more than once
    concurrent: int  # the most executions of one run alive at one moment, over all runs

    def statuses(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for row in self.rows:
            found[row.status] = found.get(row.status, 0) + 1
        return found

    def by_id(self) -> dict[UUID, Any]:
        return {row.id: row for row in self.rows}

    def check(self) -> None:
        """What every scenario promises: every run ended, within the bound, none completed
        twice, and no two attempts of a run ever ran at the same time."""
        assert self.lost == 0, f"{self.lost} run(s) never ended in {self.bound}s: {self.statuses()}"
        assert self.twice == 0, f"{self.twice} run(s) finished more than once"
        assert self.concurrent <= 1, f"attempts of a run overlapped ({self.concurrent} at once)"
        assert self.seconds <= self.bound, f"settled in {self.seconds:.1f}s > {self.bound}s"


@dataclass
class Scenario:
    """One fault scenario: its processes, streams and runs, and the line it reports."""

    make_stream: Callable[..., dict[str, Any]]
    workspace_id: UUID
    spawn: Callable[..., Process]
    redis: redis.Redis
    report: Path

    def runs(self, pipeline: str, count_: int = 1, **params: Any) -> list[UUID]:
        stream = UUID(self.make_stream(pipeline, params=params)["id"])
        return [self.run_of(stream) for _ in range(count_)]

    def run_of(self, stream_id: UUID, params: dict[str, Any] | None = None) -> UUID:
        """A manual run of the stream (created and published as the API does)."""
        run_id: UUID = service.create(self.workspace_id, stream_id, RunType.MANUAL, params).run.id
        return run_id

    def worker(
        self,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> Process:
        args = ("--pool", "prefork", "-c", str(concurrency))
        return self.spawn("worker", *args, env=env, prefix=prefix)

    def executions(self, run_id: UUID) -> int:
        """How many times the run's pipeline started."""
        return int(self.redis.get(executions_key(run_id)) or 0)

    def finished(self, run_id: UUID) -> int:
        """How many times the run's pipeline returned normally."""
        return int(self.redis.get(finished_key(run_id)) or 0)

    def recorded(self, run_id: UUID) -> list[Execution]:
        """The run's executions as the pipeline recorded them (Redis server clock)."""
        return executions(self.redis, run_id)

    def concurrent(self, run_id: UUID) -> int:
        return most_at_once(self.recorded(run_id))

    def settle(self, name: str, run_ids: list[UUID], since: float, bound: float) -> Settled:
        """Wait until every run is terminal (or `bound` seconds after `since` passed), count
        what went wrong, and record the scenario's line in the report."""
        left = max(0.0, bound - (time.monotonic() - since))
        with contextlib.suppress(AssertionError):  # a timeout shows as `lost`
            wait_for(lambda: count(run_ids, *TERMINAL) == len(run_ids), left, "runs to end")
        seconds = time.monotonic() - since
        found = rows(run_ids)
        settled = Settled(
            found,
            seconds,
            bound,
            lost=sum(1 for row in found if row.status not in TERMINAL),
            twice=sum(1 for run_id in run_ids if self.finished(run_id) > 1),
            concurrent=max((self.concurrent(run_id) for run_id in run_ids), default=0),
        )
        line = {
            "scenario": name,
            "runs": len(run_ids),
            "lost": settled.lost,
            "twice": settled.twice,
            "concurrent": settled.concurrent,
            "seconds": round(settled.seconds, 1),
        }
        with self.report.open("a") as out:
            out.write(json.dumps(line) + "\n")
        return settled


def row(run_id: UUID) -> Any:
    [found] = rows([run_id])
    return found


def running_on(run_id: UUID, process: Process) -> bool:
    """The run is running, on the worker `process` started."""
    found = row(run_id)
    return found.status == "running" and str(found.worker or "").startswith(f"{process.name}@")


def attempt_running(run_id: UUID, attempt: int) -> bool:
    found = row(run_id)
    return found.status == "running" and found.attempt == attempt


def server_time(client: redis.Redis) -> float:
    """Now, on the Redis server's clock (the one the test pipelines stamp with)."""
    seconds, micros = client.time()
    return float(seconds) + micros / 1_000_000


def pause(scenario: Scenario, stream_id: UUID) -> None:
    """Stop the stream's schedule; once this returns, beat creates no more runs for it."""
    streams.update(scenario.workspace_id, stream_id, {"schedule_config": {"enabled": False}})


def restart_postgres(action: str) -> None:
    """Stop or start this machine's Postgres cluster (the fault tests need a local one)."""
    root = Path("/etc/postgresql")
    versions = sorted(root.glob("*")) if root.exists() else []
    assert versions, "the Postgres fault test needs a local cluster managed by pg_ctlcluster"
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1].name, "main", action],
        check=True,
        capture_output=True,
    )
    if action == "start":
        db.dispose()  # this process's pooled connections died with the server


def postgres_outage(seconds: float) -> float:
    """Stop Postgres for `seconds`, then start it again; how long it was really away."""
    began = time.monotonic()
    restart_postgres("stop")
    try:
        time.sleep(seconds)  # the outage under test: its length is the point
    finally:
        restart_postgres("start")
    return time.monotonic() - began


# Flow control (tests/faults/test_flow_control.py): what the `test.record` pipeline wrote.


@dataclass(frozen=True)
class Interval:
    """One execution as `test.record` wrote it: wall-clock seconds; `end` None while it runs
    (or since its worker was killed)."""

    run_id: UUID
    attempt: int
    start: float
    end: float | None


def create_record_table() -> None:
    """The table `test.record` writes to, in this test's own database."""
    with db.unit_of_work() as conn:
        conn.execute(
            sa.text(
                f"CREATE TABLE IF NOT EXISTS {RECORD_TABLE} (token text PRIMARY KEY, "
                "label text NOT NULL, run_id uuid NOT NULL, attempt int NOT NULL, "
                "start float8 NOT NULL, finish float8)"
            )
        )


def intervals(label: str) -> list[Interval]:
    """Every execution `test.record` recorded under `label`, in the order they started."""
    with db.unit_of_work() as conn:
        found = conn.execute(
            sa.text(
                f"SELECT run_id, attempt, start, finish FROM {RECORD_TABLE}"
                " WHERE label = :label ORDER BY start"
            ),
            {"label": label},
        )
        return [Interval(*row) for row in found]


def most_running(found: Sequence[Interval], open_until: float | None = None) -> int:
    """The most executions running at one moment (sweep line over [start, end]); one with
    no end counts as running until `open_until` (default: still running). Intervals that
    only touch do not overlap."""
    never = float("inf") if open_until is None else open_until
    events = sorted(
        [(i.start, 1) for i in found] + [(never if i.end is None else i.end, -1) for i in found]
    )
    alive = most = 0
    for _, change in events:  # at equal times -1 sorts first: an end before a start
        alive += change
        most = max(most, alive)
    return most


def busiest_window(starts: Sequence[float], seconds: float) -> int:
    """The most starts in any half-open window [t, t + seconds)."""
    ordered = sorted(starts)
    most = 0
    first = 0
    for last, start in enumerate(ordered):
        while start - ordered[first] >= seconds:
            first += 1
        most = max(most, last - first + 1)
    return most
