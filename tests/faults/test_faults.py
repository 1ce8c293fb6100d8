"""Kill, restart and duplicate real processes; every run still ends, and ends once.

Each scenario runs subprocess workers and beat (with the test timings: heartbeat 1 s,
lease 5 s, sweep 2 s, cancel grace 3 s) on queues of its own, then checks that every run
is terminal, that none completed more often than it should, and that none is left running.
"""

from __future__ import annotations

import signal
import time
from typing import Any
from uuid import UUID

import pytest
import redis
from fastapi.testclient import TestClient

from app.runs import dispatch
from app.settings import get_settings
from tests.faults.helpers import (
    count,
    create_runs,
    executions,
    restart_postgres,
    rows,
    settle,
)
from tests.fixtures.services import wait_for

pytestmark = pytest.mark.slow

LEASE_AND_SWEEP = 5 + 2


def test_sigkill_worker_with_runs_in_flight(
    isolated: str,
    make_stream: Any,
    workspace_id: UUID,
    spawn: Any,
    record: Any,
    redis_client: redis.Redis,
) -> None:
    stream = make_stream("test.work", params={"seconds": 2})
    spawn("beat")
    victim = spawn("worker", "--pool", "prefork", "-c", "2")
    run_ids = create_runs(workspace_id, UUID(stream["id"]), 6)
    wait_for(lambda: count(run_ids, "running") == 2, 20, "two runs in flight")
    killed = [row.id for row in rows(run_ids) if row.status == "running"]

    started = time.monotonic()
    victim.kill()
    spawn("worker", "--pool", "prefork", "-c", "2")
    settled = settle(run_ids, started, LEASE_AND_SWEEP + 6 * 2 + 15, redis_client)

    record(
        "SIGKILL a worker with 2 of 6 runs in flight",
        6,
        settled.lost,
        settled.twice,
        settled.seconds,
    )
    assert settled.statuses() == {"completed": 6}
    assert settled.twice == 0
    for row in settled.rows:
        assert row.attempt == (2 if row.id in killed else 1)


def test_flushdb_with_runs_queued(
    isolated: str,
    make_stream: Any,
    workspace_id: UUID,
    spawn: Any,
    record: Any,
    redis_client: redis.Redis,
) -> None:
    stream = make_stream("test.work", params={"seconds": 0.1})
    run_ids = create_runs(workspace_id, UUID(stream["id"]), 20)
    assert redis_client.llen(get_settings().runs_queue) == 20

    started = time.monotonic()
    redis_client.flushdb()
    spawn("beat")
    spawn("worker", "--pool", "prefork", "-c", "2")
    settled = settle(run_ids, started, LEASE_AND_SWEEP + 20, redis_client)

    record(
        "FLUSHDB (Redis loses its data) with 20 runs queued",
        20,
        settled.lost,
        settled.twice,
        settled.seconds,
    )
    assert settled.statuses() == {"completed": 20}
    assert settled.twice == 0


def test_api_accepts_runs_while_the_broker_is_unreachable(
    isolated: str,
    make_stream: Any,
    auth: dict[str, str],
    spawn: Any,
    record: Any,
    redis_client: redis.Redis,
) -> None:
    stream = make_stream("test.work", params={"seconds": 0.1})
    api = spawn("api", "--port", "8791", env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    import httpx

    def up() -> bool:
        try:
            return httpx.get("http://127.0.0.1:8791/health").status_code == 503
        except httpx.HTTPError:
            return False

    wait_for(up, 30, "the API, whose broker is unreachable")
    started = time.monotonic()
    responses = [
        httpx.post("http://127.0.0.1:8791/runs", json={"stream_id": stream["id"]}, headers=auth)
        for _ in range(5)
    ]
    assert [r.status_code for r in responses] == [202] * 5
    run_ids = [UUID(r.json()["id"]) for r in responses]
    api.kill()
    spawn("beat")
    spawn("worker", "--pool", "prefork", "-c", "2")
    settled = settle(run_ids, started, LEASE_AND_SWEEP + 20, redis_client)

    record(
        "POST /runs while the API cannot reach Redis",
        5,
        settled.lost,
        settled.twice,
        settled.seconds,
    )
    assert settled.statuses() == {"completed": 5}


def test_postgres_restart_with_runs_in_flight(
    isolated: str,
    make_stream: Any,
    workspace_id: UUID,
    spawn: Any,
    record: Any,
    redis_client: redis.Redis,
    api: TestClient,
    auth: dict[str, str],
) -> None:
    stream = make_stream("test.work", params={"seconds": 3})
    spawn("beat")
    spawn("worker", "--pool", "prefork", "-c", "2")
    run_ids = create_runs(workspace_id, UUID(stream["id"]), 4)
    wait_for(lambda: count(run_ids, "running") == 2, 20, "two runs in flight")

    started = time.monotonic()
    restart_postgres("stop")
    try:
        response = api.get(f"/runs/{run_ids[0]}", headers=auth)
        assert response.status_code == 503, response.text
        time.sleep(2)  # Postgres stays away for a while: the outage under test
    finally:
        restart_postgres("start")
    wait_for(lambda: api.get("/health").status_code == 200, 30, "the API to see Postgres")
    settled = settle(run_ids, started, LEASE_AND_SWEEP + 30, redis_client)

    record(
        "Postgres stopped for 2 s with 2 of 4 runs in flight",
        4,
        settled.lost,
        settled.twice,
        settled.seconds,
    )
    assert settled.statuses() == {"completed": 4}
    assert settled.twice == 0


def test_every_message_delivered_three_times(
    isolated: str,
    make_stream: Any,
    workspace_id: UUID,
    spawn: Any,
    record: Any,
    redis_client: redis.Redis,
) -> None:
    stream = make_stream("test.work", params={"seconds": 0.2})
    run_ids = create_runs(workspace_id, UUID(stream["id"]), 20)
    started = time.monotonic()
    for _ in range(2):
        assert dispatch.publish_many(run_ids) == 20
    spawn("worker", "--pool", "prefork", "-c", "4")
    settled = settle(run_ids, started, 40, redis_client)

    record("every message published 3 times", 20, settled.lost, settled.twice, settled.seconds)
    assert settled.statuses() == {"completed": 20}
    assert [executions(redis_client, run_id) for run_id in run_ids] == [1] * 20
    assert all(row.attempt == 1 for row in settled.rows)


def test_run_longer_than_the_visibility_timeout_never_runs_twice_at_once(
    isolated: str,
    make_stream: Any,
    workspace_id: UUID,
    spawn: Any,
    record: Any,
    redis_client: redis.Redis,
) -> None:
    stream = make_stream("test.work", params={"seconds": 12})
    short = {"RUNWAY_BROKER_VISIBILITY_TIMEOUT": "2", "RUNWAY_BROKER_RESTORE_SECONDS": "1"}
    worker = spawn("worker", "--pool", "prefork", "-c", "3", env=short)
    started = time.monotonic()
    [run_id] = create_runs(workspace_id, UUID(stream["id"]), 1)
    settled = settle([run_id], started, 40, redis_client)

    record(
        "a 12 s run with a 2 s broker visibility timeout",
        1,
        settled.lost,
        settled.twice,
        settled.seconds,
    )
    assert settled.statuses() == {"completed": 1}
    assert executions(redis_client, run_id) == 1
    assert "not claimable" in worker.log(), "the message was not delivered again: no test"


def test_poison_run_that_kills_its_process_fails_after_max_attempts(
    isolated: str,
    make_stream: Any,
    workspace_id: UUID,
    spawn: Any,
    record: Any,
    redis_client: redis.Redis,
) -> None:
    poison = make_stream("test.suicide")
    healthy = make_stream("test.work", params={"seconds": 0.1})
    spawn("beat")
    worker = spawn("worker", "--pool", "prefork", "-c", "2")
    started = time.monotonic()
    [run_id] = create_runs(workspace_id, UUID(poison["id"]), 1)
    settled = settle([run_id], started, 3 * (LEASE_AND_SWEEP + 3) + 10, redis_client)

    record(
        "a run that SIGKILLs its own process, every attempt",
        1,
        settled.lost,
        settled.twice,
        settled.seconds,
    )
    [row] = settled.rows
    assert (row.status, row.attempt, row.error_type) == ("failed", 3, "lease_expired")
    assert worker.alive()
    after = create_runs(workspace_id, UUID(healthy["id"]), 2)
    assert settle(after, time.monotonic(), 20, redis_client).statuses() == {"completed": 2}


def test_cancel_a_stubborn_run(
    isolated: str,
    make_stream: Any,
    workspace_id: UUID,
    spawn: Any,
    record: Any,
    redis_client: redis.Redis,
    api: TestClient,
    auth: dict[str, str],
) -> None:
    stubborn = make_stream("builtin.sleep", params={"seconds": 60, "ignore_cancel": True})
    polite = make_stream("builtin.sleep", params={"seconds": 60})
    worker = spawn("worker", "--pool", "prefork", "-c", "2")
    run_ids = [
        *create_runs(workspace_id, UUID(stubborn["id"]), 1),
        *create_runs(workspace_id, UUID(polite["id"]), 1),
    ]
    wait_for(lambda: count(run_ids, "running") == 2, 20, "both runs to start")

    started = time.monotonic()
    for run_id in run_ids:
        response = api.delete(f"/runs/{run_id}", headers=auth)
        assert response.status_code == 200
        assert response.json()["cancel_requested"] is True
    grace = get_settings().cancel_grace_seconds
    settled = settle(run_ids, started, grace + 3, redis_client)

    record(
        "cancel a run that ignores it, and one that obeys",
        2,
        settled.lost,
        settled.twice,
        settled.seconds,
    )
    assert settled.statuses() == {"cancelled": 2}
    assert settled.seconds <= grace + 2
    assert worker.alive()
    healthy = make_stream("test.work", params={"seconds": 0.1})
    after = create_runs(workspace_id, UUID(healthy["id"]), 2)
    assert settle(after, time.monotonic(), 20, redis_client).statuses() == {"completed": 2}


def test_soft_and_hard_time_limits(
    isolated: str,
    make_stream: Any,
    workspace_id: UUID,
    spawn: Any,
    record: Any,
    redis_client: redis.Redis,
) -> None:
    obeys = make_stream("test.slow", params={"seconds": 10})
    stubborn = make_stream("test.slow", params={"seconds": 10, "stubborn": True})
    spawn("beat")
    spawn("worker", "--pool", "prefork", "-c", "2", env={"RUNWAY_MAX_ATTEMPTS": "1"})
    started = time.monotonic()
    run_ids = [
        *create_runs(workspace_id, UUID(obeys["id"]), 1),
        *create_runs(workspace_id, UUID(stubborn["id"]), 1),
    ]
    settled = settle(run_ids, started, 20, redis_client)

    record(
        "time limits: soft (obeyed) and hard (soft ignored)",
        2,
        settled.lost,
        settled.twice,
        settled.seconds,
    )
    by_id = {row.id: row for row in settled.rows}
    soft, hard = by_id[run_ids[0]], by_id[run_ids[1]]
    assert (soft.status, soft.error_type) == ("failed", "timeout")
    assert (hard.status, hard.error_type) == ("failed", "timeout")
    assert "hard time limit" in hard.error


def test_sigterm_lets_the_running_run_finish(
    isolated: str,
    make_stream: Any,
    workspace_id: UUID,
    spawn: Any,
    record: Any,
    redis_client: redis.Redis,
) -> None:
    stream = make_stream("test.work", params={"seconds": 3})
    worker = spawn("worker", "--pool", "prefork", "-c", "1")
    [run_id] = create_runs(workspace_id, UUID(stream["id"]), 1)
    wait_for(lambda: count([run_id], "running") == 1, 20, "the run to start")

    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    settled = settle([run_id], started, 5, redis_client)

    record(
        "SIGTERM a worker mid-run (warm shutdown)", 1, settled.lost, settled.twice, settled.seconds
    )
    assert settled.statuses() == {"completed": 1}
    assert executions(redis_client, run_id) == 1


def test_run_cut_off_by_shutdown_is_rescued(
    isolated: str,
    make_stream: Any,
    workspace_id: UUID,
    spawn: Any,
    record: Any,
    redis_client: redis.Redis,
) -> None:
    stream = make_stream("test.work", params={"seconds": 4})
    spawn("beat")
    worker = spawn("worker", "--pool", "prefork", "-c", "1")
    [run_id] = create_runs(workspace_id, UUID(stream["id"]), 1)
    wait_for(lambda: count([run_id], "running") == 1, 20, "the run to start")

    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    worker.kill()  # the shutdown bound ran out: the supervisor kills what is left
    spawn("worker", "--pool", "prefork", "-c", "1")
    settled = settle([run_id], started, LEASE_AND_SWEEP + 4 + 10, redis_client)

    record(
        "SIGTERM then SIGKILL (shutdown bound ran out)",
        1,
        settled.lost,
        settled.twice,
        settled.seconds,
    )
    assert settled.statuses() == {"completed": 1}
    assert settled.rows[0].attempt == 2


def test_backlog_with_short_lease_is_not_duplicated(
    isolated: str,
    make_stream: Any,
    workspace_id: UUID,
    spawn: Any,
    record: Any,
    redis_client: redis.Redis,
) -> None:
    stream = make_stream("builtin.noop")
    run_ids = create_runs(workspace_id, UUID(stream["id"]), 3000)
    beat = spawn("beat")
    started = time.monotonic()
    worker = spawn("worker", "--pool", "prefork", "-c", "2")
    settled = settle(run_ids, started, 120, redis_client)

    republished = sum(
        int(line.split("re-published ")[1].split()[0])
        for line in beat.log().splitlines()
        if "re-published" in line
    )
    record(
        f"3000 queued runs, lease 5 s ({republished} re-published)",
        3000,
        settled.lost,
        settled.twice,
        settled.seconds,
    )
    assert settled.statuses() == {"completed": 3000}
    assert republished <= 10
    assert worker.log().count("not claimable") <= 10
