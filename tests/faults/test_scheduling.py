"""Beat under faults: killed between its commit and its publish, stopped past its lock, and
overlap `queue` with a manual run in the way."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

import celeryconfig
from app import db
from app.settings import get_settings
from tests.faults.helpers import (
    LEASE_AND_SWEEP,
    Scenario,
    pause,
    row,
)
from tests.fixtures.broker import queue_length
from tests.fixtures.processes import Process
from tests.fixtures.proxy import TcpProxy, upstream_of
from tests.fixtures.queries import runs_of, ticks_of
from tests.fixtures.services import wait_for
from tests.pipelines import most_at_once

pytestmark = pytest.mark.slow

LEADING = "beat: leading"


def leads(beat: Process) -> bool:
    assert beat.alive(), beat.log()[-3000:]
    return LEADING in beat.log()


def every_second(scenario: Scenario, seconds: float, **schedule: Any) -> UUID:
    """A stream of test.work (`seconds` long) due every second."""
    config = {"interval_seconds": 1, **schedule}
    stream = scenario.make_stream("test.work", params={"seconds": seconds}, schedule_config=config)
    return UUID(stream["id"])


def test_beat_killed_between_its_commit_and_its_publish(
    scenario: Scenario, tcp_proxy: Callable[[tuple[str, int]], TcpProxy]
) -> None:
    direct = get_settings().redis_url
    broker = tcp_proxy(upstream_of(direct, 6379))
    beat = scenario.spawn(
        "beat", env={"REDIS_URL": broker.url(direct), "REDBEAT_REDIS_URL": direct}
    )
    # Beat connects to its broker on its first tick, and waits for that connection.
    wait_for(lambda: leads(beat) and broker.connections() > 0, 30, "beat to lead and connect")
    # Three streams come due at the same moment, after the hold: beat commits their runs in
    # one tick, then blocks publishing them (a second tick would wait behind that publish).
    stream_ids = [every_second(scenario, 0.5, enabled=False) for _ in range(3)]
    broker.hold()  # from now on nothing beat sends to the broker arrives
    with db.unit_of_work() as conn:
        conn.execute(
            sa.text(
                "UPDATE research_streams SET next_scheduled_run = now() + interval '1 second',"
                " schedule_config = schedule_config || '{\"enabled\": true}'"
                " WHERE id = ANY(:ids)"
            ),
            {"ids": stream_ids},
        )
    wait_for(
        lambda: all(runs_of(stream_id) for stream_id in stream_ids),
        30,
        "beat to commit a run of each stream",
    )

    started = time.monotonic()
    beat.kill()
    broker.cut()
    committed = [run.id for stream_id in stream_ids for run in runs_of(stream_id)]
    assert queue_length(scenario.redis) == 0, "a message got through"
    # The new beat leads once the dead one's lock expires; its sweep publishes the runs.
    scenario.spawn("beat")
    scenario.worker(2)
    settled = scenario.settle(
        "beat SIGKILLed after its commit, before its publish",
        committed,
        started,
        celeryconfig.redbeat_lock_timeout + LEASE_AND_SWEEP + 10,
    )

    settled.check()
    assert settled.statuses() == {"completed": len(committed)}
    assert [scenario.executions(run_id) for run_id in committed] == [1] * len(committed)


def test_leading_beat_stopped_past_its_lock_timeout(scenario: Scenario) -> None:
    lock_timeout = float(celeryconfig.redbeat_lock_timeout)
    first = scenario.spawn("beat")
    wait_for(lambda: leads(first), 30, "the first beat to lead")
    second = scenario.spawn("beat")
    scenario.worker(2)
    stream_id = every_second(scenario, 0.2, overlap="allow")
    wait_for(lambda: len(runs_of(stream_id)) >= 2, 20, "the stream's first runs")

    started = time.monotonic()
    first.signal(signal.SIGSTOP, group=True)
    try:
        wait_for(lambda: leads(second), lock_timeout + 15, "the second beat to take the lead")
        taken_over = len(runs_of(stream_id))
        wait_for(lambda: len(runs_of(stream_id)) > taken_over + 2, 15, "the second beat's runs")
    finally:
        first.signal(signal.SIGCONT, group=True)
    wait_for(lambda: "lost the lead" in first.log(), lock_timeout / 3 + 10, "the first to notice")
    pause(scenario, stream_id)
    run_ids = [run.id for run in runs_of(stream_id)]
    settled = scenario.settle(
        f"leading beat SIGSTOPped past its lock timeout ({lock_timeout:.0f} s)",
        run_ids,
        started,
        lock_timeout + 40,
    )

    settled.check()
    assert first.alive() and second.alive(), "a beat that lost its lock must wait, not exit"
    slots = [run.scheduled_for for run in settled.rows]
    assert len(slots) == len(set(slots)), "two runs for one slot"
    ticks = ticks_of(stream_id)
    assert len({tick.scheduled_for for tick in ticks}) == len(ticks)
    fired = sorted(tick.execution_id for tick in ticks if tick.outcome == "fired")
    assert fired == sorted(run_ids)


def test_overlap_queue_with_a_manual_run_in_between(scenario: Scenario) -> None:
    scenario.spawn("beat")
    scenario.worker(3)
    config = {"interval_seconds": 2, "overlap": "queue"}
    stream = scenario.make_stream("test.work", params={"seconds": 4}, schedule_config=config)
    stream_id = UUID(stream["id"])
    first = wait_for(lambda: running_scheduled(stream_id), 20, "the first scheduled run")

    started = time.monotonic()
    manual = scenario.run_of(stream_id, {"seconds": 2.5})  # ends well before the first
    queued = wait_for(lambda: scheduled_after(stream_id, manual), 10, "the next slot's run")
    pause(scenario, stream_id)
    run_ids = [run.id for run in runs_of(stream_id)]
    settled = scenario.settle(
        "overlap queue: scheduled run, manual run, next slot queued",
        run_ids,
        started,
        LEASE_AND_SWEEP + 4 * len(run_ids) + 5,
    )

    settled.check()
    assert settled.statuses() == {"completed": len(run_ids)}
    [in_between] = scenario.recorded(manual)
    assert row(queued).created_at.timestamp() < in_between.last, "no manual run in between"
    [ahead] = scenario.recorded(first)
    [behind] = scenario.recorded(queued)
    assert behind.start >= ahead.last, (
        f"the queued run started {ahead.last - behind.start:.1f}s before the one ahead ended"
    )
    scheduled = [run.id for run in settled.rows if run.run_type == "scheduled"]
    executions = [e for run_id in scheduled for e in scenario.recorded(run_id)]
    assert most_at_once(executions) == 1, "scheduled runs of an overlap-queue stream overlapped"


def running_scheduled(stream_id: UUID) -> UUID | None:
    for run in runs_of(stream_id):
        if run.run_type == "scheduled" and run.status == "running":
            return UUID(str(run.id))
    return None


def scheduled_after(stream_id: UUID, manual: UUID) -> UUID | None:
    """The first scheduled run created after the manual one."""
    created = row(manual).created_at
    later = [
        run
        for run in runs_of(stream_id)
        if run.run_type == "scheduled" and run.created_at > created
    ]
    return UUID(str(later[0].id)) if later else None
