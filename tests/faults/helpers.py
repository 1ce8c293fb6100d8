"""Shared by the fault scenarios: isolated queues, making runs, waiting for them to settle."""

from __future__ import annotations

import contextlib
import subprocess
import time
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
from tests.fixtures.services import wait_for
from tests.pipelines import executions_key, finished_key

TERMINAL = ("completed", "failed", "cancelled")


def create_runs(workspace_id: UUID, stream_id: UUID, count: int) -> list[UUID]:
    return [
        service.create(workspace_id, stream_id, RunType.MANUAL, None).run.id for _ in range(count)
    ]


def rows(run_ids: list[UUID]) -> list[Any]:
    with db.unit_of_work() as conn:
        return conn.execute(
            sa.select(pipeline_executions).where(pipeline_executions.c.id.in_(run_ids))
        ).all()


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


def settle(run_ids: list[UUID], since: float, timeout: float, client: redis.Redis) -> Settled:
    """Wait until every run is terminal (or the timeout passes); count what went wrong."""
    # A timeout is reported through `lost`, so the test's assertion says what happened.
    with contextlib.suppress(AssertionError):
        wait_for(lambda: count(run_ids, *TERMINAL) == len(run_ids), timeout, "runs to settle")
    found = rows(run_ids)
    lost = sum(1 for row in found if row.status not in TERMINAL)
    twice = sum(1 for run_id in run_ids if int(client.get(finished_key(run_id)) or 0) > 1)
    return Settled(found, time.monotonic() - since, lost, twice)


def executions(client: redis.Redis, run_id: UUID) -> int:
    return int(client.get(executions_key(run_id)) or 0)


def restart_postgres(action: str) -> None:
    """Stop or start this machine's Postgres cluster (the fault tests need a local one)."""
    versions = sorted(Path("/etc/postgresql").glob("*")) if Path("/etc/postgresql").exists() else []
    assert versions, "the Postgres fault test needs a local cluster managed by pg_ctlcluster"
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1].name, "main", action],
        check=True,
        capture_output=True,
    )
