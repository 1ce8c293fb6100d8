"""Shared by the fault scenarios: queues of their own, making runs, waiting for them to end."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import redis
import sqlalchemy as sa

from app import db
from app.models import pipeline_executions
from app.runs import service
from app.states import RunType
from tests.fixtures.processes import Process
from tests.fixtures.services import wait_for
from tests.pipelines import executions_key, finished_key

TERMINAL = ("completed", "failed", "cancelled")


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
    lost: int  # runs that never reached a terminal state
    twice: int  # runs whose pipeline finished more than once

    def statuses(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for row in self.rows:
            found[row.status] = found.get(row.status, 0) + 1
        return found

    def by_id(self) -> dict[UUID, Any]:
        return {row.id: row for row in self.rows}


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
        return [
            service.create(self.workspace_id, stream, RunType.MANUAL, None).run.id
            for _ in range(count_)
        ]

    def worker(self, concurrency: int = 2, env: dict[str, str] | None = None) -> Process:
        return self.spawn("worker", "--pool", "prefork", "-c", str(concurrency), env=env)

    def executions(self, run_id: UUID) -> int:
        return int(self.redis.get(executions_key(run_id)) or 0)

    def settle(self, name: str, run_ids: list[UUID], since: float, timeout: float) -> Settled:
        """Wait until every run is terminal (or the timeout passes), count what went wrong,
        and record the scenario's line in the report."""
        with contextlib.suppress(AssertionError):  # a timeout shows as `lost`
            wait_for(lambda: count(run_ids, *TERMINAL) == len(run_ids), timeout, "runs to end")
        found = rows(run_ids)
        settled = Settled(
            found,
            time.monotonic() - since,
            lost=sum(1 for row in found if row.status not in TERMINAL),
            twice=sum(
                1 for run_id in run_ids if int(self.redis.get(finished_key(run_id)) or 0) > 1
            ),
        )
        line = {
            "scenario": name,
            "runs": len(run_ids),
            "lost": settled.lost,
            "twice": settled.twice,
            "seconds": round(settled.seconds, 1),
        }
        with self.report.open("a") as out:
            out.write(json.dumps(line) + "\n")
        return settled


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
