"""Kill, restart and duplicate real processes; every run still ends, and ends once.

Each scenario runs subprocess workers and beat (with the test timings: heartbeat 1 s,
lease 5 s, sweep 2 s, cancel grace 3 s) on queues of its own, then checks (`Settled.check`)
that every run is terminal within the scenario's bound, that none completed more than once,
and, from the test pipelines' own records, that no two attempts of a run ever overlapped.
"""

from __future__ import annotations

import signal
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from app.runs import dispatch
from app.settings import get_settings
from tests.faults.helpers import LEASE_AND_SWEEP, Scenario, count, restart_postgres, rows
from tests.fixtures.broker import queue_length
from tests.fixtures.services import wait_for

pytestmark = pytest.mark.slow


def test_sigkill_worker_with_runs_in_flight(scenario: Scenario) -> None:
    scenario.spawn("beat")
    victim = scenario.worker(2)
    run_ids = scenario.runs("test.work", 6, seconds=2)
    wait_for(lambda: count(run_ids, "running") == 2, 20, "two runs in flight")
    killed = {row.id for row in rows(run_ids) if row.status == "running"}

    started = time.monotonic()
    victim.kill()
    scenario.worker(2)
    settled = scenario.settle(
        "SIGKILL a worker with 2 of 6 runs in flight",
        run_ids,
        started,
        LEASE_AND_SWEEP + 6 * 2 + 15,
    )

    settled.check()
    assert settled.statuses() == {"completed": 6}
    assert {row.id: row.attempt for row in settled.rows} == {
        run_id: 2 if run_id in killed else 1 for run_id in run_ids
    }


def test_flushdb_with_runs_queued(scenario: Scenario) -> None:
    run_ids = scenario.runs("test.work", 20, seconds=0.1)
    assert queue_length(scenario.redis) == 20

    started = time.monotonic()
    scenario.redis.flushdb()
    scenario.spawn("beat")
    scenario.worker(2)
    settled = scenario.settle(
        "FLUSHDB (Redis loses its data) with 20 runs queued", run_ids, started, LEASE_AND_SWEEP + 20
    )

    settled.check()
    assert settled.statuses() == {"completed": 20}


def test_api_accepts_runs_while_the_broker_is_unreachable(
    scenario: Scenario, auth: dict[str, str]
) -> None:
    stream = scenario.make_stream("test.work", params={"seconds": 0.1})
    api = scenario.spawn("api", "--port", "8791", env={"REDIS_URL": "redis://127.0.0.1:1/0"})

    def degraded() -> bool:
        try:
            return httpx.get("http://127.0.0.1:8791/health").status_code == 503
        except httpx.HTTPError:
            return False

    wait_for(degraded, 30, "the API, whose broker is unreachable")
    started = time.monotonic()
    body = {"stream_id": stream["id"]}
    responses = [
        httpx.post("http://127.0.0.1:8791/runs", json=body, headers=auth) for _ in range(5)
    ]
    assert [response.status_code for response in responses] == [202] * 5
    api.kill()
    scenario.spawn("beat")
    scenario.worker(2)
    run_ids = [response.json()["id"] for response in responses]
    settled = scenario.settle(
        "POST /runs while the API cannot reach Redis", run_ids, started, LEASE_AND_SWEEP + 20
    )

    settled.check()
    assert settled.statuses() == {"completed": 5}


def test_postgres_restart_with_runs_in_flight(
    scenario: Scenario, api: TestClient, auth: dict[str, str]
) -> None:
    scenario.spawn("beat")
    scenario.worker(2)
    run_ids = scenario.runs("test.work", 4, seconds=1.5)
    wait_for(lambda: count(run_ids, "running") == 2, 20, "two runs in flight")

    started = time.monotonic()
    restart_postgres("stop")
    try:
        response = api.get(f"/runs/{run_ids[0]}", headers=auth)
        assert response.status_code == 503, response.text
        # The outage under test: the running runs' heartbeats and final writes, and the
        # next runs' claims, all fall inside it.
        time.sleep(3)
    finally:
        restart_postgres("start")
    wait_for(lambda: api.get("/health").status_code == 200, 30, "the API to see Postgres")
    settled = scenario.settle(
        "Postgres stopped for 3 s with 2 of 4 runs in flight",
        run_ids,
        started,
        LEASE_AND_SWEEP + 30,
    )

    settled.check()
    assert settled.statuses() == {"completed": 4}
    assert all(row.attempt == 1 for row in settled.rows)  # retried writes, not re-runs


def test_every_message_delivered_three_times(scenario: Scenario) -> None:
    run_ids = scenario.runs("test.work", 20, seconds=0.2)
    started = time.monotonic()
    for _ in range(2):
        assert dispatch.publish_many(run_ids) == 20
    scenario.worker(4)
    settled = scenario.settle("every message published 3 times", run_ids, started, 40)

    settled.check()
    assert settled.statuses() == {"completed": 20}
    assert [scenario.executions(run_id) for run_id in run_ids] == [1] * 20
    assert all(row.attempt == 1 for row in settled.rows)


def test_run_longer_than_the_visibility_timeout_never_runs_twice_at_once(
    scenario: Scenario,
) -> None:
    short = {"RUNWAY_BROKER_VISIBILITY_TIMEOUT": "2", "RUNWAY_BROKER_RESTORE_SECONDS": "1"}
    worker = scenario.worker(3, env=short)
    started = time.monotonic()
    [run_id] = scenario.runs("test.work", 1, seconds=12)
    settled = scenario.settle(
        "a 12 s run with a 2 s broker visibility timeout", [run_id], started, 40
    )

    settled.check()
    assert settled.statuses() == {"completed": 1}
    assert scenario.executions(run_id) == 1
    assert "not claimable" in worker.log(), "the message was not delivered again: no test"


def test_poison_run_that_kills_its_process_fails_after_max_attempts(scenario: Scenario) -> None:
    scenario.spawn("beat")
    worker = scenario.worker(2)
    started = time.monotonic()
    poison = scenario.runs("test.suicide")
    settled = scenario.settle(
        "a run that SIGKILLs its own process, every attempt",
        poison,
        started,
        3 * (LEASE_AND_SWEEP + 3) + 10,
    )

    settled.check()
    [row] = settled.rows
    assert (row.status, row.attempt, row.error_type) == ("failed", 3, "lease_expired")
    assert worker.alive()
    healthy = scenario.runs("test.work", 2, seconds=0.1)
    wait_for(lambda: count(healthy, "completed") == 2, 20, "the worker to go on serving")


def test_cancel_a_stubborn_run(scenario: Scenario, api: TestClient, auth: dict[str, str]) -> None:
    worker = scenario.worker(2)
    run_ids = [
        *scenario.runs("test.work", seconds=60, ignore_cancel=True),
        *scenario.runs("test.work", seconds=60),
    ]
    wait_for(lambda: count(run_ids, "running") == 2, 20, "both runs to start")

    started = time.monotonic()
    for run_id in run_ids:
        response = api.delete(f"/runs/{run_id}", headers=auth)
        assert (response.status_code, response.json()["cancel_requested"]) == (200, True)
    grace = get_settings().cancel_grace_seconds
    settled = scenario.settle(
        "cancel a run that ignores it, and one that obeys", run_ids, started, grace + 3
    )

    settled.check()
    assert settled.statuses() == {"cancelled": 2}
    assert settled.seconds <= grace + 2
    assert worker.alive()
    healthy = scenario.runs("test.work", 2, seconds=0.1)
    wait_for(lambda: count(healthy, "completed") == 2, 20, "the worker to go on serving")


def test_soft_and_hard_time_limits(scenario: Scenario) -> None:
    scenario.spawn("beat")
    scenario.worker(2, env={"RUNWAY_MAX_ATTEMPTS": "1"})
    started = time.monotonic()
    [obeys] = scenario.runs("test.slow", seconds=10)
    [stubborn] = scenario.runs("test.slow", seconds=10, stubborn=True)
    settled = scenario.settle(
        "time limits: soft (obeyed) and hard (soft ignored)", [obeys, stubborn], started, 20
    )

    settled.check()
    soft, hard = settled.by_id()[obeys], settled.by_id()[stubborn]
    assert (soft.status, soft.error_type) == ("failed", "timeout")
    assert (hard.status, hard.error_type) == ("failed", "timeout")
    assert "hard time limit" in hard.error


def test_sigterm_lets_the_running_run_finish(scenario: Scenario) -> None:
    worker = scenario.worker(1)
    [run_id] = scenario.runs("test.work", seconds=3)
    wait_for(lambda: count([run_id], "running") == 1, 20, "the run to start")

    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    settled = scenario.settle("SIGTERM a worker mid-run (warm shutdown)", [run_id], started, 8)

    settled.check()
    assert settled.statuses() == {"completed": 1}
    assert scenario.executions(run_id) == 1


def test_run_cut_off_by_shutdown_is_rescued(scenario: Scenario) -> None:
    scenario.spawn("beat")
    worker = scenario.worker(1)
    [run_id] = scenario.runs("test.work", seconds=4)
    wait_for(lambda: count([run_id], "running") == 1, 20, "the run to start")

    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    worker.kill()  # the shutdown bound ran out: the supervisor kills what is left
    scenario.worker(1)
    settled = scenario.settle(
        "SIGTERM then SIGKILL (shutdown bound ran out)", [run_id], started, LEASE_AND_SWEEP + 4 + 10
    )

    settled.check()
    assert settled.statuses() == {"completed": 1}
    assert settled.rows[0].attempt == 2


def test_backlog_with_short_lease_is_not_duplicated(scenario: Scenario) -> None:
    run_ids = scenario.runs("builtin.noop", 3000)
    beat = scenario.spawn("beat")
    started = time.monotonic()
    worker = scenario.worker(2)
    settled = scenario.settle("3000 queued runs, lease 5 s", run_ids, started, 120)

    republished = sum(
        int(line.split("re-published ")[1].split()[0])
        for line in beat.log().splitlines()
        if "re-published" in line
    )
    settled.check()
    assert settled.statuses() == {"completed": 3000}
    assert republished <= 10
    assert worker.log().count("not claimable") <= 10
