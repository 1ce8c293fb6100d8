"""Bulk cancel (`POST /runs/cancel`) of runs that are running on a real worker process and of
many waiting behind them, with the test timings (cancel grace 3 s, heartbeat 1 s).

A worker with five slots runs five runs of `test.work` (tests/pipelines.py), four that obey a
cancel and one that ignores it (ended by the grace), all holding the five slots of a limit key;
500 more runs wait parked behind that key. One call must cancel the 500 at once and ask the
five to stop; the five end `cancelled` within the grace, and none of the 500 ever starts, not
even when the five give their slots back.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from app.limits import service as limits
from app.settings import get_settings
from tests.faults.helpers import Scenario, count, rows
from tests.fixtures.services import wait_for

pytestmark = pytest.mark.slow


def test_bulk_cancel_of_500_waiting_and_5_running_runs(
    scenario: Scenario, api: TestClient, auth: dict[str, str], workspace_id: UUID
) -> None:
    limits.put(workspace_id, "k", 5, None)
    obeys = UUID(scenario.make_stream("test.work", params={"seconds": 120}, limit_keys=["k"])["id"])
    ignores = UUID(
        scenario.make_stream(
            "test.work", params={"seconds": 120, "ignore_cancel": True}, limit_keys=["k"]
        )["id"]
    )
    worker = scenario.worker(5)
    running = [*(scenario.run_of(obeys) for _ in range(4)), scenario.run_of(ignores)]
    wait_for(lambda: count(running, "running") == 5, 60, "five runs to start")
    waiting = [scenario.run_of(obeys) for _ in range(500)]
    parked: list[Any] = [row.waiting_for for row in rows(waiting)]
    assert parked == [{"kind": "concurrency", "key": "k", "until": None}] * 500

    started = time.monotonic()
    response = api.post("/runs/cancel", json={"run_type": "manual"}, headers=auth)

    assert (response.status_code, response.json()) == (
        200,
        {"cancelled": 500, "cancel_requested": 5},
    )
    assert count(waiting, "cancelled") == 500  # at once, not within the grace
    grace = get_settings().cancel_grace_seconds
    settled = scenario.settle(
        "bulk cancel: 500 waiting, 5 running (one ignores it)",
        [*running, *waiting],
        started,
        grace + 3,
    )
    settled.check()
    assert settled.statuses() == {"cancelled": 505}
    assert settled.seconds <= grace + 2
    assert [scenario.executions(run_id) for run_id in running] == [1] * 5
    assert worker.alive()
    healthy = scenario.runs("test.work", 2, seconds=0.1)
    wait_for(lambda: count(healthy, "completed") == 2, 20, "the worker to go on serving")
    # The five gave their slots back long ago: had a cancelled run been released, it ran.
    assert sum(scenario.executions(run_id) for run_id in waiting) == 0
