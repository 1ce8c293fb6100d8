"""Attempts of a run never overlap (guarantee 9): a worker that lost its lease, or cannot
renew it, stops its pipeline before the next attempt starts elsewhere.

The proof is in the pipelines' own records (tests/pipelines.py): every execution stamps its
start, that it is alive every 0.1 s, and its end, on the Redis server's clock. Two attempts
overlap if one stamped while the other had started and not yet stopped.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from uuid import UUID

import pytest

from app.settings import get_settings
from tests.faults.helpers import (
    HEARTBEAT,
    LEASE,
    LEASE_AND_SWEEP,
    Scenario,
    attempt_running,
    row,
    running_on,
    server_time,
)
from tests.fixtures.proxy import TcpProxy, upstream_of
from tests.fixtures.services import wait_for

pytestmark = pytest.mark.slow

Proxies = Callable[[tuple[str, int]], TcpProxy]


def test_lease_lost_while_the_pipeline_ignores_cancel(scenario: Scenario) -> None:
    scenario.spawn("beat")
    stalled = scenario.worker(1)
    [run_id] = scenario.runs("test.work", seconds=12, ignore_cancel=True)
    wait_for(lambda: running_on(run_id, stalled), 20, "the run to start on the first worker")
    scenario.worker(1)  # the rescuer, idle and ready before the fault

    started = time.monotonic()
    stalled.signal(signal.SIGSTOP, group=True)
    try:
        wait_for(lambda: attempt_running(run_id, 2), LEASE_AND_SWEEP + 10, "the rescue")
        # Stopped past lease + sweep, and long enough for attempt 2 to be well under way.
        time.sleep(max(1.0, LEASE_AND_SWEEP + 1 - (time.monotonic() - started)))
    finally:
        stalled.signal(signal.SIGCONT, group=True)
    settled = scenario.settle(
        "SIGSTOP a worker past its lease; its run ignores cancel",
        [run_id],
        started,
        LEASE_AND_SWEEP + 12 + 10,
    )

    settled.check()
    assert settled.statuses() == {"completed": 1}
    assert (settled.rows[0].attempt, scenario.finished(run_id)) == (2, 1)
    assert settled.concurrent == 1
    first, second = scenario.recorded(run_id)[:2]
    assert first.last <= second.start, (
        f"attempt 1 ran on for {first.last - second.start:.2f}s after attempt 2 started"
    )


def silent_since(scenario: Scenario, run_id: UUID) -> float | None:
    """When the run's lease was last renewed, once renewals have stopped (none for longer
    than a heartbeat period); None while they go on."""
    renewed = row(run_id).heartbeat_at.timestamp()
    return renewed if server_time(scenario.redis) - renewed > HEARTBEAT + 0.25 else None


def test_worker_cut_off_from_postgres_stops_its_run_before_the_lease_expires(
    scenario: Scenario, tcp_proxy: Proxies
) -> None:
    database_url = get_settings().database_url
    proxy = tcp_proxy(upstream_of(database_url, 5432))
    scenario.spawn("beat")
    isolated = scenario.worker(1, env={"DATABASE_URL": proxy.url(database_url)})
    [run_id] = scenario.runs("test.work", seconds=15, ignore_cancel=True)
    wait_for(lambda: running_on(run_id, isolated), 20, "the run to start on the proxied worker")
    scenario.worker(1)  # reaches Postgres directly

    started = time.monotonic()
    proxy.cut()
    try:
        renewed = wait_for(lambda: silent_since(scenario, run_id), 5, "heartbeats to stop")
        lease_expires = renewed + LEASE
        wait_for(lambda: attempt_running(run_id, 2), LEASE_AND_SWEEP + 10, "the rescue")
    finally:
        proxy.forward()
    settled = scenario.settle(
        "a worker cut off from Postgres (proxy cut) mid-run",
        [run_id],
        started,
        LEASE_AND_SWEEP + 15 + 10,
    )

    settled.check()
    assert settled.statuses() == {"completed": 1}
    assert (settled.rows[0].attempt, scenario.finished(run_id)) == (2, 1)
    first, second = scenario.recorded(run_id)[:2]
    assert first.last < lease_expires, (
        f"the cut-off worker's pipeline ran {first.last - lease_expires:.2f}s past its lease"
    )
    assert first.last <= second.start


def test_worker_cut_off_from_redis_finishes_its_run_once(
    scenario: Scenario, tcp_proxy: Proxies
) -> None:
    redis_url = get_settings().redis_url
    proxy = tcp_proxy(upstream_of(redis_url, 6379))
    scenario.spawn("beat")
    isolated = scenario.worker(1, env={"REDIS_URL": proxy.url(redis_url)})
    [run_id] = scenario.runs("test.work", seconds=6)
    wait_for(lambda: running_on(run_id, isolated), 20, "the run to start on the proxied worker")
    scenario.worker(1)  # reaches Redis directly

    started = time.monotonic()
    cut_at = server_time(scenario.redis)
    proxy.cut()
    try:
        settled = scenario.settle(
            "a worker cut off from Redis (proxy cut) mid-run",
            [run_id],
            started,
            LEASE_AND_SWEEP + 6 + 10,
        )
    finally:
        proxy.forward()

    settled.check()
    assert settled.statuses() == {"completed": 1}
    assert settled.rows[0].attempt == 1
    assert (scenario.executions(run_id), scenario.finished(run_id)) == (1, 1)
    [execution] = scenario.recorded(run_id)
    assert execution.start < cut_at < execution.last, "the cut did not fall inside the run"
