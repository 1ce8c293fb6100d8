"""Flow control across real worker processes (SPEC: Flow control, guarantee 11): limit keys
cap how many runs run at once and how many start per period, across every worker, through
crashes and duplicate deliveries; priorities and workspace caps keep the line fair.

Every run here is `test.record` (tests/pipelines.py): it writes when it started and ended,
on the wall clock of this machine, into a table of the test's own database (not Redis: the
test sessions on a machine share one Redis database, and each flushes it when it starts);
the assertions are computed from those intervals (and, for the rate, from the claim times
Postgres keeps). The workers run the test timings: heartbeat 1 s, lease 5 s, sweep 2 s.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app import db, workspaces
from app.limits import service as limits
from app.limits.gate import release
from app.limits.service import Rate
from app.models import limits as limits_table
from app.models import pipeline_executions
from app.runs import dispatch
from app.runs import service as runs
from app.settings import get_settings
from app.states import RunType
from app.workspaces import service as workspace_service
from tests.faults.helpers import (
    LEASE_AND_SWEEP,
    TERMINAL,
    Interval,
    Scenario,
    busiest_window,
    count,
    create_record_table,
    intervals,
    most_running,
    rows,
    running_on,
)
from tests.fixtures.services import run_row, wait_for

pytestmark = pytest.mark.slow

WORKSPACE = "acme"  # the workspace of the `workspace_id` fixture (tests/fixtures/services.py)


def record_key() -> str:
    """A label for one test's records, in a table of its own database."""
    create_record_table()
    return uuid.uuid4().hex


def keyed_stream(scenario: Scenario, key: str, record: str, seconds: float, **params: Any) -> UUID:
    body = {"params": {"seconds": seconds, "record": record, **params}, "limit_keys": [key]}
    return UUID(scenario.make_stream("test.record", **body)["id"])


def started_by(found: list[Interval], run_ids: list[UUID]) -> dict[UUID, Interval]:
    """The first recorded execution of each run that has one."""
    first: dict[UUID, Interval] = {}
    for interval in found:
        if interval.run_id in run_ids and interval.run_id not in first:
            first[interval.run_id] = interval
    return first


def test_max_concurrent_holds_across_workers_and_keeps_the_slots_busy(
    scenario: Scenario,
) -> None:
    seconds, runs_, cap = 0.75, 60, 3
    ideal = runs_ / cap * seconds
    limits.put(scenario.workspace_id, "api", cap, None)
    record = record_key()
    stream = keyed_stream(scenario, "api", record, seconds)
    scenario.worker(4)
    scenario.worker(4)

    since, began = time.monotonic(), time.time()
    run_ids = [scenario.run_of(stream) for _ in range(runs_)]
    settled = scenario.settle(
        f"max_concurrent {cap}, {runs_} runs of {seconds}s, 2 workers -c 4",
        run_ids,
        since,
        1.3 * ideal,
    )

    found = intervals(record)
    most = most_running(found)
    last_end = max(i.end or float("inf") for i in found)
    print(
        f"\nmax_concurrent: most at once {most}, all ended {last_end - began:.2f}s after the "
        f"first create (ideal {ideal:.2f}s, bound {1.3 * ideal:.2f}s)"
    )
    settled.check()
    assert settled.statuses() == {"completed": runs_}
    assert sorted(i.run_id for i in found) == sorted(run_ids), "each run ran exactly once"
    assert most <= cap, f"{most} runs of the key ran at once (max_concurrent {cap})"
    assert most == cap, f"never more than {most} at once: the slots were not kept busy"
    assert last_end - began <= 1.3 * ideal


def claim_times(workspace_id: UUID, key: str) -> list[float]:
    """The key's sliding window as Postgres holds it: the claim times of its latest starts."""
    with db.unit_of_work() as conn:
        starts = conn.execute(
            sa.select(limits_table.c.recent_starts).where(
                limits_table.c.workspace_id == workspace_id, limits_table.c.key == key
            )
        ).scalar_one()
    return [start.timestamp() for start in starts or []]


def test_rate_limit_holds_in_every_window_across_workers(scenario: Scenario) -> None:
    seconds, runs_, permits, period = 0.2, 100, 10, 2.0
    ideal = (runs_ / permits - 1) * period + seconds  # the last ten start 18 s after the first
    limits.put(scenario.workspace_id, "rated", None, Rate(permits, period))
    record = record_key()
    stream = keyed_stream(scenario, "rated", record, seconds)
    scenario.worker(4)
    scenario.worker(4)

    since, began = time.monotonic(), time.time()
    run_ids = [scenario.run_of(stream) for _ in range(runs_)]
    # The window keeps only the latest `permits` claim times; polling it every ~20 ms while
    # the runs go gathers every claim time (at most `permits` claims can happen between two
    # polls, and only if the limit held: a breach would show all the same, as extra starts).
    claims: set[float] = set()

    def all_ended() -> bool:
        claims.update(claim_times(scenario.workspace_id, "rated"))
        return count(run_ids, *TERMINAL) == runs_

    wait_for(all_ended, 1.3 * ideal + 5, "every run to end")
    settled = scenario.settle(
        f"rate {permits} per {period}s, {runs_} runs of {seconds}s, 2 workers -c 4",
        run_ids,
        since,
        1.3 * ideal,
    )

    found = intervals(record)
    starts = [i.start for i in found]
    # A start as the pipeline records it comes a few ms after its claim (the claim's commit,
    # building the run's context, the first line of the pipeline), and that lag varies from
    # run to run, so two starts whose claims were a whole period apart may be recorded a
    # little less than a period apart. 50 ms is well above that lag on this machine and far
    # below the 2 s period: a window of period - 50 ms must never hold more than `permits`.
    tolerance = 0.05
    recorded_busiest = busiest_window(starts, period - tolerance)
    claimed_busiest = busiest_window(sorted(claims), period)
    last_end = max(i.end or float("inf") for i in found)
    print(
        f"\nrate: busiest {period}s window {claimed_busiest} claims (Postgres, "
        f"{len(claims)} gathered), {recorded_busiest} recorded starts in any "
        f"{period - tolerance:.2f}s window ({busiest_window(starts, period)} in a whole "
        f"{period}s one); all ended {last_end - began:.2f}s after the first "
        f"create (ideal {ideal:.2f}s, bound {1.3 * ideal:.2f}s)"
    )
    settled.check()
    assert settled.statuses() == {"completed": runs_}
    assert sorted(i.run_id for i in found) == sorted(run_ids), "each run ran exactly once"
    assert len(claims) == runs_, f"gathered {len(claims)} claim times, not {runs_}"
    assert claimed_busiest <= permits, f"{claimed_busiest} claims in one {period}s window"
    assert recorded_busiest <= permits, f"{recorded_busiest} starts in one {period}s window"
    assert last_end - began <= 1.3 * ideal


def test_slots_held_by_a_killed_worker_free_within_lease_and_sweep(scenario: Scenario) -> None:
    """Two long runs hold both slots on a worker that is SIGKILLed; once the sweep rescues
    the dead worker's runs, both slots are taken again on another worker: by the runs that
    were waiting or by the rescued runs' retries, whichever claims first."""
    seconds, cap = 1.0, 2
    beat = scenario.spawn("beat")
    limits.put(scenario.workspace_id, "slots", cap, None)
    record = record_key()
    # 30 s on a first attempt (the one that dies), `seconds` on the retry.
    stream = keyed_stream(scenario, "slots", record, 30, retry_seconds=seconds)
    doomed = scenario.worker(2)
    held = [scenario.run_of(stream) for _ in range(cap)]
    wait_for(lambda: all(running_on(r, doomed) for r in held), 30, "both slots to be taken")
    waiting = [scenario.run_of(stream, {"seconds": seconds}) for _ in range(cap)]
    rescuer = scenario.worker(2)
    wait_for(lambda: "beat: leading" in beat.log(), 30, "beat to lead (it runs the sweep)")
    assert all(row.waiting_for is not None for row in rows(waiting)), rows(waiting)
    assert not started_by(intervals(record), waiting)

    since, killed_at = time.monotonic(), time.time()
    doomed.kill()
    bound = LEASE_AND_SWEEP + 1.0  # + the release, a publish and a claim: well under 1 s
    wait_for(
        lambda: len([i for i in intervals(record) if i.start > killed_at]) >= cap,
        bound + 10,
        "both slots to be taken again",
    )
    retaken = sorted(i.start for i in intervals(record) if i.start > killed_at)[:cap]
    latest = retaken[-1] - killed_at
    settled = scenario.settle(
        "SIGKILL a worker holding both slots of max_concurrent 2",
        [*held, *waiting],
        since,
        LEASE_AND_SWEEP + 4 * seconds + 10,
    )

    found = intervals(record)
    most = most_running(found, open_until=killed_at)  # a killed execution ran until the kill
    after_kill = sorted((i for i in found if i.start > killed_at), key=lambda i: i.start)
    order = ["waiting" if i.run_id in waiting else "retried" for i in after_kill]
    print(
        f"\nkilled worker: both slots taken again {latest:.2f}s after the kill (bound {bound}s); "
        f"order after the kill: {order}"
        f"; most at once {most}"
    )
    settled.check()
    assert all(i.start > killed_at for i in started_by(found, waiting).values())
    assert latest <= bound, f"the slots were taken again {latest:.2f}s after the kill > {bound}s"
    assert settled.statuses() == {"completed": len(held) + len(waiting)}
    by_id = settled.by_id()
    assert [by_id[r].attempt for r in held] == [2] * cap
    assert [by_id[r].attempt for r in waiting] == [1] * cap
    assert most <= cap, f"{most} runs of the key ran at once (max_concurrent {cap})"
    assert rescuer.alive()


def test_duplicate_deliveries_never_take_two_slots(scenario: Scenario) -> None:
    seconds, runs_, cap = 0.5, 20, 2
    limits.put(scenario.workspace_id, "dup", cap, None)
    record = record_key()
    stream = keyed_stream(scenario, "dup", record, seconds)
    scenario.worker(3)
    scenario.worker(3)

    since = time.monotonic()
    run_ids = [scenario.run_of(stream) for _ in range(runs_)]
    # Every run gets a duplicate while parked (its claim must be refused), one once it is
    # released (two deliveries race for one slot) and one while it runs.
    dispatch.publish_many([dispatch.Job(r, "normal", True) for r in run_ids])
    sent: dict[UUID, set[str]] = {r: {"parked"} for r in run_ids}

    def duplicate_and_check() -> bool:
        found = rows(run_ids)
        for row in found:
            stage = {"pending": "released", "running": "running"}.get(row.status)
            if stage and row.waiting_for is None and stage not in sent[row.id]:
                sent[row.id].add(stage)
                dispatch.publish_many([dispatch.Job(row.id, "normal", True)])
        return all(row.status in TERMINAL for row in found)

    wait_for(duplicate_and_check, 30, "every run to end")
    settled = scenario.settle(
        f"duplicate deliveries, max_concurrent {cap}, {runs_} runs", run_ids, since, 30
    )

    found = intervals(record)
    most = most_running(found)
    duplicates = sum(len(stages) for stages in sent.values())
    print(f"\nduplicates: {duplicates} duplicate messages sent, most at once {most}")
    settled.check()
    assert settled.statuses() == {"completed": runs_}
    assert all(row.attempt == 1 for row in settled.rows), [row.attempt for row in settled.rows]
    assert sorted(i.run_id for i in found) == sorted(run_ids), "each run ran exactly once"
    assert most <= cap, f"{most} runs of the key ran at once (max_concurrent {cap})"
    assert duplicates >= 2 * runs_


def test_a_high_priority_run_starts_next_behind_a_backlog(scenario: Scenario) -> None:
    seconds, backlog = 1.0, 500
    record = record_key()
    stream = UUID(
        scenario.make_stream("test.record", params={"seconds": seconds, "record": record})["id"]
    )
    normal = [scenario.run_of(stream) for _ in range(backlog)]  # queued: no worker yet
    scenario.worker(2)
    scenario.worker(2)
    wait_for(lambda: count(normal, "running") == 4, 30, "both workers to be busy")
    wait_for(lambda: count(normal, "completed") >= 8, 30, "the workers to settle into a rhythm")

    sent = time.time()
    urgent = runs.create(scenario.workspace_id, stream, RunType.MANUAL, None, priority="high")
    urgent_id = urgent.run.id
    wait_for(
        lambda: urgent_id in started_by(intervals(record), [urgent_id]),
        10 * seconds,
        "the high-priority run to start",
    )
    found = intervals(record)
    started = started_by(found, [urgent_id])[urgent_id].start
    waited = started - sent
    # Overtaking is judged on the claims (Postgres's clock), which follow the order in which
    # workers took messages: when two slots free at once, the two pipelines may start in
    # either order. A claim within `race` of the high run's is a tie, not an overtaking.
    race = timedelta(seconds=0.05)
    urgent_row = run_row(urgent_id)
    overtaken = [
        row.id
        for row in rows(normal)
        if row.started_at is not None
        and urgent_row.created_at + race < row.started_at < urgent_row.started_at - race
    ]
    freed = min(i.end for i in found if i.end is not None and i.end > sent)
    print(
        f"\npriority: the high run started {waited:.3f}s after its publish "
        f"({started - freed:.3f}s after the first slot freed), behind "
        f"{backlog - count(normal, *TERMINAL, 'running')} queued normal runs; "
        f"{len(overtaken)} normal run(s) started in between"
    )
    # The next free worker takes it: the slots were all busy with runs of `seconds`, so one
    # frees within `seconds` of the publish; the hand-off (final write, ack, fetch, claim)
    # takes a few ms, 0.25 s is a generous allowance for it.
    handoff = 0.25
    assert waited <= seconds + handoff, f"the high run waited {waited:.2f}s after its publish"
    assert started - freed <= handoff, f"the first slot freed {started - freed:.2f}s earlier"
    # Prefetch 1 and late acks: a busy worker holds no message in reserve, so no normal run
    # may start between the high run's publish and its start.
    assert not overtaken, f"{len(overtaken)} normal runs started before the high one"


def test_a_capped_workspace_flood_does_not_delay_another_workspace(
    scenario: Scenario, api: TestClient
) -> None:
    seconds, flood, cap = 1.0, 2000, 2
    record = record_key()
    workspace_service.set_max_concurrent(WORKSPACE, cap)
    flooding = UUID(
        scenario.make_stream("test.record", params={"seconds": seconds, "record": record})["id"]
    )
    other_id, other_key = workspaces.create_key("beta", "tests")
    response = api.post(
        "/streams",
        json={
            "name": "b",
            "pipeline": "test.record",
            "params": {"seconds": seconds, "record": record},
        },
        headers={"Authorization": f"Bearer {other_key}"},
    )
    assert response.status_code == 201, response.text
    other_stream = UUID(response.json()["id"])
    scenario.worker(2)
    scenario.worker(2)

    # A's flood, set-based: parked on the workspace's cap as `runs.create` parks each, then
    # one release (what `runs.create` does after each insert).
    run = runs.create(scenario.workspace_id, flooding, RunType.MANUAL, None).run
    values = {
        "workspace_id": scenario.workspace_id,
        "stream_id": flooding,
        "run_type": "manual",
        "pipeline": "test.record",
        "params": run.params,
        "max_attempts": run.max_attempts,
        "priority": "normal",
        "limit_keys": [],
        "gated": True,
        "waiting_for": {"kind": "workspace", "key": None, "until": None},
    }
    assert (run.gated, run.waiting_for) == (True, values["waiting_for"])
    flood_ids = [run.id] + [uuid.uuid4() for _ in range(flood - 1)]
    with db.unit_of_work() as conn:
        conn.execute(sa.insert(pipeline_executions), [{"id": r, **values} for r in flood_ids[1:]])
    release(scenario.workspace_id, [])
    wait_for(lambda: count(flood_ids, "running") == cap, 30, "A to fill its cap")
    depth = dispatch.queue_depth(scenario.redis, get_settings().runs_queue)

    published = time.time()
    other = runs.create(other_id, other_stream, RunType.MANUAL, None).run.id
    most_in_db = 0

    def other_started() -> bool:
        nonlocal most_in_db
        most_in_db = max(most_in_db, count(flood_ids, "running"))
        return other in started_by(intervals(record), [other])

    wait_for(other_started, 10 * seconds, "B's run to start")
    waited = started_by(intervals(record), [other])[other].start - published
    # Let A's flood go on for a few of its runs, watching its running count.
    flood_started = len(started_by(intervals(record), flood_ids))

    def more_of_a_ran() -> bool:
        nonlocal most_in_db
        most_in_db = max(most_in_db, count(flood_ids, "running"))
        return len(started_by(intervals(record), flood_ids)) >= flood_started + 6

    wait_for(more_of_a_ran, 10 * seconds, "more of A's runs to run")
    found = [i for i in intervals(record) if i.run_id != other]
    most = most_running(found)
    print(
        f"\nfair share: B's run started {waited:.3f}s after its publish; runs queue held "
        f"{depth} message(s) with {flood} of A's runs waiting; A's most at once {most} "
        f"(recorded), {most_in_db} (Postgres)"
    )
    assert waited <= seconds, f"B's run waited {waited:.2f}s > one run of A ({seconds}s)"
    assert most <= cap, f"{most} of A's runs ran at once (cap {cap})"
    assert most_in_db <= cap
    assert depth <= cap, f"{depth} messages in the runs queue: A's flood was published"
