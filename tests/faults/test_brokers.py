"""Redis restarts with its data kept, and workers whose clocks disagree."""

from __future__ import annotations

import time
from uuid import UUID

import httpx
import pytest

from app.settings import get_settings
from tests.faults.helpers import LEASE_AND_SWEEP, RETRY_MAX, Scenario, count
from tests.fixtures.clock import ahead
from tests.fixtures.redis_server import RedisServer, free_port
from tests.fixtures.services import wait_for

pytestmark = pytest.mark.slow


def test_redis_restarted_with_its_data_kept(
    scenario: Scenario, aof_redis: RedisServer, auth: dict[str, str]
) -> None:
    env = {"REDIS_URL": aof_redis.url}
    port = free_port()
    scenario.spawn("api", "--port", str(port), env=env)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{base}/health"), 30, "the API")
    scenario.spawn("beat", env=env)
    scenario.worker(2, env=env)
    stream = scenario.make_stream("test.work", params={"seconds": 4})
    responses = [
        httpx.post(f"{base}/runs", json={"stream_id": stream["id"]}, headers=auth) for _ in range(6)
    ]
    assert [response.status_code for response in responses] == [202] * 6
    run_ids = [UUID(response.json()["id"]) for response in responses]
    queue = get_settings().runs_queue
    broker = aof_redis.client()
    wait_for(lambda: count(run_ids, "running") == 2, 20, "two runs in flight")
    assert broker.llen(queue) == 4

    started = time.monotonic()
    aof_redis.restart()
    assert aof_redis.client().llen(queue) == 4, "the restarted Redis lost queued messages"
    settled = scenario.settle(
        "Redis (AOF) SIGKILLed and restarted: 2 runs in flight, 4 queued",
        run_ids,
        started,
        LEASE_AND_SWEEP + 3 * 4 + 10,
    )

    settled.check()
    assert settled.statuses() == {"completed": 6}
    assert all(row.attempt == 1 for row in settled.rows)
    assert [scenario.executions(run_id) for run_id in run_ids] == [1] * 6


def answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def test_worker_clock_30s_ahead_with_retries_across_workers(
    scenario: Scenario, faketime: str
) -> None:
    skewed = scenario.worker(2, prefix=ahead(faketime, 30))
    scenario.worker(2)
    scenario.spawn("beat")
    assert skewed.alive()

    started = time.monotonic()
    run_ids = scenario.runs("test.flaky", 10, fail_times=1, seconds=0.2)
    settled = scenario.settle(
        "a worker 30 s ahead (faketime); retries cross workers",
        run_ids,
        started,
        LEASE_AND_SWEEP + RETRY_MAX + 3,
    )

    settled.check()
    assert settled.statuses() == {"completed": 10}
    assert all(row.attempt == 2 for row in settled.rows)
    skews = {run_id: [e.skew for e in scenario.recorded(run_id)] for run_id in run_ids}
    assert any(skew > 25 for runs in skews.values() for skew in runs), "no run on the fast clock"
    crossed = [
        run_id
        for run_id, seen in skews.items()
        if any(skew > 25 for skew in seen) and any(abs(skew) < 5 for skew in seen)
    ]
    assert crossed, f"no retry went from one worker to the other (skews {skews}): no test"
