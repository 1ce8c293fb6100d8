"""Redis restarts with its data kept, and workers whose clocks disagree."""

from __future__ import annotations

import time
from functools import partial
from uuid import UUID

import httpx
import pytest

from app import app as celery_app
from app.runs import dispatch
from app.settings import get_settings
from tests.faults.helpers import LEASE_AND_SWEEP, Scenario, count, running_on
from tests.fixtures.clock import ahead
from tests.fixtures.processes import Process
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
    assert dispatch.queue_depth(broker, queue) == 4

    started = time.monotonic()
    aof_redis.restart()
    assert dispatch.queue_depth(aof_redis.client(), queue) == 4, (
        "the restarted Redis lost queued messages"
    )
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
    """Each retry is published (with its countdown) by one worker and consumed by the other,
    both ways. A message from the fast clock is due 30 s late by the slow one's: the run may
    wait for the sweep, but not for the skew. One from the slow clock arrives early by the
    fast one's: its claim must not wait a lease either, so that direction gets no sweep."""
    # A backoff of 2-4 s: longer than the second of slack the claim allows for clocks.
    backoff = {"RUNWAY_RETRY_BASE_SECONDS": "4", "RUNWAY_RETRY_MAX_SECONDS": "4"}
    fast = scenario.worker(2, env=backoff, prefix=ahead(faketime, 30))
    slow = scenario.worker(2, env=backoff)
    scenario.spawn("beat")
    work = 4 + 2 * 1  # the backoff and two 1 s attempts
    directions = [
        (fast, slow, [30, 0], LEASE_AND_SWEEP + work + 2),
        (slow, fast, [0, 30], work + 2),
    ]

    for first, then, skews, bound in directions:
        consume(then, False)
        started = time.monotonic()
        run_ids = scenario.runs("test.flaky", 2, fail_times=1, seconds=1)
        wait_for(partial(all_running_on, run_ids, first), 20, "attempts 1 on the first worker")
        consume(then, True)
        consume(first, False)
        settled = scenario.settle(
            f"retries published at clock {skews[0]:+d} s, consumed at {skews[1]:+d} s (faketime)",
            run_ids,
            started,
            bound,
        )

        settled.check()
        assert settled.statuses() == {"completed": 2}
        seen = [[round(e.skew) for e in scenario.recorded(run_id)] for run_id in run_ids]
        assert seen == [skews, skews], f"the clock skew of each attempt: {seen}"


def all_running_on(run_ids: list[UUID], worker: Process) -> bool:
    return all(running_on(run_id, worker) for run_id in run_ids)


def consume(worker: Process, on: bool) -> None:
    """Make the worker take messages from the runs queue, or stop taking them."""
    queue = get_settings().runs_queue
    control = celery_app.control
    change = control.add_consumer if on else control.cancel_consumer
    replies = change(queue, destination=[worker.node], reply=True, timeout=5)
    assert replies, f"{worker.node} did not answer"
