"""Postgres outages of several lengths with runs in flight (guarantee 10): one shorter than
the lease re-executes nothing; after a longer one every run still ends exactly once; a run
that finishes during an outage keeps its result and its attempt."""

from __future__ import annotations

import time
from uuid import UUID

import pytest

from tests.faults.helpers import (
    LEASE,
    LEASE_AND_SWEEP,
    Scenario,
    count,
    postgres_outage,
)
from tests.fixtures.services import wait_for

pytestmark = pytest.mark.slow


def test_postgres_away_for_half_a_lease_re_executes_nothing(scenario: Scenario) -> None:
    scenario.spawn("beat")
    scenario.worker(2)
    run_ids = scenario.runs("test.work", 2, seconds=8)
    wait_for(lambda: count(run_ids, "running") == 2, 20, "both runs in flight")

    started = time.monotonic()
    outage = postgres_outage(LEASE / 2)
    settled = scenario.settle(
        f"Postgres stopped for half a lease ({LEASE / 2:.1f} s), 8 s runs in flight",
        run_ids,
        started,
        outage + 8 + LEASE_AND_SWEEP + 5,
    )

    settled.check()
    assert settled.statuses() == {"completed": 2}
    attempts = {row.id: row.attempt for row in settled.rows}
    executions = {run_id: scenario.executions(run_id) for run_id in run_ids}
    assert attempts == dict.fromkeys(run_ids, 1), f"re-attempted after a {outage:.1f}s outage"
    assert executions == dict.fromkeys(run_ids, 1), f"re-executed after a {outage:.1f}s outage"


def test_postgres_away_for_two_leases_every_run_ends_once(scenario: Scenario) -> None:
    scenario.spawn("beat")
    scenario.worker(2)
    run_ids = scenario.runs("test.work", 3, seconds=8)
    wait_for(lambda: count(run_ids, "running") == 2, 20, "two runs in flight")

    started = time.monotonic()
    outage = postgres_outage(2 * LEASE)
    settled = scenario.settle(
        f"Postgres stopped for two leases ({2 * LEASE:.0f} s), 2 of 3 8 s runs in flight",
        run_ids,
        started,
        outage + LEASE_AND_SWEEP + 2 * 8 + 10,
    )

    settled.check()
    assert settled.statuses() == {"completed": 3}
    assert [scenario.finished(run_id) for run_id in run_ids] == [1] * 3


def test_final_write_during_a_long_postgres_outage(scenario: Scenario) -> None:
    scenario.spawn("beat")
    scenario.worker(1)
    [run_id] = scenario.runs("test.work", seconds=3)
    # The run ends about a second and a half into the outage, well inside its lease.
    wait_for(lambda: half_done(scenario, run_id, 1.5), 20, "the run to be half done")

    started = time.monotonic()
    outage = postgres_outage(30)
    settled = scenario.settle(
        "a run ends during a 30 s Postgres outage (its final write waits)",
        [run_id],
        started,
        outage + LEASE_AND_SWEEP + 10,
    )

    settled.check()
    assert settled.statuses() == {"completed": 1}
    assert settled.rows[0].attempt == 1
    assert (scenario.executions(run_id), scenario.finished(run_id)) == (1, 1)
    [execution] = scenario.recorded(run_id)
    assert execution.ended


def half_done(scenario: Scenario, run_id: UUID, seconds: float) -> bool:
    """The run's (only) execution has been alive for `seconds`."""
    recorded = scenario.recorded(run_id)
    return bool(recorded) and recorded[0].last - recorded[0].start >= seconds
