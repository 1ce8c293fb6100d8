"""The gate's logic (app/limits/gate.py) against real Postgres, in this process: runs are
created through the runs service (parked, then released if they fit) and their attempts
run by calling the executor directly, as a worker's task would, with `gated=True`.

No worker consumes these tests' queues: what a release publishes stays in Redis, so each
step is taken by hand and its effect on the rows checked.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from app import db
from app.limits import gate
from app.limits import service as limits
from app.limits.service import Rate
from app.models import limits as limits_table
from app.models import research_streams
from app.models import workspaces as workspaces_table
from app.runs import dispatch, executor
from app.runs import service as runs
from app.runs import store as runs_store
from app.schedules import ticker
from app.settings import get_settings
from app.states import RunStatus, RunType
from app.workspaces import service as workspace_service
from tests.fixtures.broker import empty_queue, queued_messages
from tests.fixtures.queries import runs_of
from tests.fixtures.queries import set_run as _set
from tests.fixtures.services import run_row, wait_for

WORKSPACE = "acme"  # the workspace of the `workspace_id` fixture
WORKER = "w"


def keyed(make_stream: Any, *keys: str, pipeline: str = "builtin.noop", **fields: Any) -> UUID:
    return UUID(make_stream(pipeline, limit_keys=list(keys), **fields)["id"])


def create(workspace_id: UUID, stream_id: UUID, priority: str | None = None) -> UUID:
    run_id: UUID = runs.create(
        workspace_id, stream_id, RunType.MANUAL, None, priority=priority
    ).run.id
    return run_id


def execute(run_id: UUID) -> RunStatus | None:
    return executor.execute(run_id, WORKER, gated=True)


def waiting_for(run_id: UUID) -> dict[str, Any] | None:
    found: dict[str, Any] | None = run_row(run_id).waiting_for
    return found


def released(run_ids: list[UUID]) -> list[UUID]:
    """The runs let go and not yet claimed: pending, waiting for nothing."""
    return [
        r for r in run_ids if (row := run_row(r)).status == "pending" and row.waiting_for is None
    ]


def two_slots_of_a_queueing_stream(make_stream: Any, key: str) -> list[Any]:
    """Beat fires two slots of a stream with overlap "queue": the second run is queued
    behind the first."""
    config = {"interval_seconds": 60, "overlap": "queue"}
    stream = keyed(make_stream, key, schedule_config=config)
    start = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    with db.unit_of_work() as conn:
        conn.execute(sa.update(research_streams).values(next_scheduled_run=start))
    ticker.tick(now=start)
    ticker.tick(now=start + timedelta(seconds=60))
    return runs_of(stream)


def concurrency(key: str) -> dict[str, Any]:
    return {"kind": "concurrency", "key": key, "until": None}


def test_a_parked_run_s_claim_is_refused_even_with_a_slot_free(
    isolated_queues: str, make_stream: Any, workspace_id: UUID
) -> None:
    limits.put(workspace_id, "k", 1, None)
    stream = keyed(make_stream, "k")
    first, second = create(workspace_id, stream), create(workspace_id, stream)
    assert run_row(first).gated and waiting_for(first) is None  # released at its creation
    assert waiting_for(second) == concurrency("k")

    assert execute(second) is None
    assert executor.execute(second, WORKER) is None  # a plain message is sent to the gate too
    # Room for it now, but no release came: still only a release may let it go.
    with db.unit_of_work() as conn:
        conn.execute(sa.update(limits_table).values(max_concurrent=5))
    assert execute(second) is None
    row = run_row(second)
    assert (row.status, row.attempt, row.waiting_for) == ("pending", 0, concurrency("k"))

    assert execute(first) is RunStatus.COMPLETED
    assert waiting_for(second) is None  # the end of `first` released it
    assert execute(second) is RunStatus.COMPLETED


def test_release_order_is_priority_then_oldest(
    isolated_queues: str, make_stream: Any, workspace_id: UUID
) -> None:
    limits.put(workspace_id, "k", 1, None)
    stream = keyed(make_stream, "k")
    holder = create(workspace_id, stream)
    low = create(workspace_id, stream, "low")
    older_normal = create(workspace_id, stream, "normal")
    high = create(workspace_id, stream, "high")
    newer_normal = create(workspace_id, stream, "normal")
    newer_high = create(workspace_id, stream, "high")
    everyone = [holder, low, older_normal, high, newer_normal, newer_high]

    order = []
    while next_ := released(everyone):
        assert len(next_) == 1, next_  # one slot: one run let go at a time
        assert execute(next_[0]) is RunStatus.COMPLETED
        order.append(next_[0])

    assert order == [holder, high, newer_high, older_normal, newer_normal, low]


def test_waiting_for_a_rate_permit_says_until_when(
    isolated_queues: str, make_stream: Any, workspace_id: UUID, redis_client: Any
) -> None:
    limits.put(workspace_id, "r", None, Rate(1, 60))
    stream = keyed(make_stream, "r")
    first = create(workspace_id, stream)
    assert execute(first) is RunStatus.COMPLETED
    second = create(workspace_id, stream)

    why = waiting_for(second)
    assert why is not None and (why["kind"], why["key"]) == ("rate", "r"), why
    until = datetime.fromisoformat(why["until"])
    expected = run_row(first).started_at + timedelta(seconds=60)
    assert abs((until - expected).total_seconds()) < 1, (until, expected)
    assert execute(second) is None
    with db.unit_of_work() as conn:
        wake_at = conn.execute(sa.select(limits_table.c.wake_at)).scalar_one()
    assert wake_at is not None and abs((wake_at - until).total_seconds()) < 1
    control = dispatch.queue_depth(redis_client, get_settings().control_queue)
    assert control == 1  # the release for when the window opens


def test_waiting_for_the_workspace_cap(
    isolated_queues: str, make_stream: Any, workspace_id: UUID
) -> None:
    workspace_service.set_max_concurrent(WORKSPACE, 1)
    stream = UUID(make_stream("builtin.noop")["id"])  # no keys: the cap alone gates it
    first, second = create(workspace_id, stream), create(workspace_id, stream)

    assert run_row(first).gated and waiting_for(first) is None
    assert waiting_for(second) == {"kind": "workspace", "key": None, "until": None}
    assert execute(second) is None
    assert execute(first) is RunStatus.COMPLETED
    assert waiting_for(second) is None
    assert execute(second) is RunStatus.COMPLETED


def test_waiting_for_an_older_run_of_the_stream_overlap_queue(
    isolated_queues: str, make_stream: Any, workspace_id: UUID
) -> None:
    limits.put(workspace_id, "k", 5, None)
    first, queued = two_slots_of_a_queueing_stream(make_stream, "k")
    assert waiting_for(first.id) is None  # released: it is on its way to a slot
    assert queued.after_run == first.id and queued.gated
    assert queued.waiting_for == {"kind": "overlap", "key": None, "until": None}
    assert execute(queued.id) is None  # the older run has not ended
    assert execute(first.id) is RunStatus.COMPLETED
    assert execute(queued.id) is RunStatus.COMPLETED


def test_deleting_a_limit_releases_its_waiting_runs(
    isolated_queues: str, make_stream: Any, workspace_id: UUID
) -> None:
    limits.put(workspace_id, "k", 1, None)
    stream = keyed(make_stream, "k")
    holder = create(workspace_id, stream)
    waiting = [create(workspace_id, stream) for _ in range(3)]
    assert released([holder, *waiting]) == [holder]

    limits.delete(workspace_id, "k")

    assert released([holder, *waiting]) == [holder, *waiting]
    for run_id in waiting:  # the holder has not even started: no limit, no waiting
        assert execute(run_id) is RunStatus.COMPLETED


def test_a_run_with_keys_but_no_limit_row_runs_freely(
    isolated_queues: str, make_stream: Any, workspace_id: UUID
) -> None:
    stream = keyed(make_stream, "unlimited")
    run_ids = [create(workspace_id, stream) for _ in range(3)]
    assert released(run_ids) == run_ids
    assert all(run_row(r).gated for r in run_ids)
    _set(run_ids[0], status="running", attempt=1, heartbeat_at=sa.func.now())
    assert execute(run_ids[1]) is RunStatus.COMPLETED
    assert execute(run_ids[2]) is RunStatus.COMPLETED


def test_a_retried_gated_run_goes_through_the_gate(
    isolated_queues: str, make_stream: Any, workspace_id: UUID
) -> None:
    limits.put(workspace_id, "k", 1, None)
    stream = keyed(make_stream, "k", pipeline="test.flaky", params={"seconds": 0})
    flaky = create(workspace_id, stream)
    assert execute(flaky) is RunStatus.RETRYING
    other = create(workspace_id, stream)  # the slot is free while `flaky` backs off
    assert released([other]) == [other]
    _set(other, status="running", attempt=1, heartbeat_at=sa.func.now())
    _set(flaky, next_attempt_at=sa.func.now())  # its backoff is over

    assert execute(flaky) is None
    row = run_row(flaky)
    assert (row.status, row.attempt, row.waiting_for) == ("retrying", 1, concurrency("k"))

    _set(other, status="completed", completed_at=sa.func.now())
    gate.release(workspace_id, ["k"])  # what the end of `other` sets going
    assert waiting_for(flaky) is None
    assert execute(flaky) is RunStatus.COMPLETED
    assert run_row(flaky).attempt == 2


def test_cancelling_a_waiting_run_clears_waiting_for_and_lets_the_next_go(
    isolated_queues: str, make_stream: Any, workspace_id: UUID
) -> None:
    limits.put(workspace_id, "k", 1, None)
    stream = keyed(make_stream, "k")
    holder, parked, behind = (create(workspace_id, stream) for _ in range(3))
    assert waiting_for(parked) == concurrency("k")

    cancelled = runs.cancel(workspace_id, parked)
    assert (cancelled.status, cancelled.waiting_for) == ("cancelled", None)
    assert (run_row(parked).status, waiting_for(parked)) == ("cancelled", None)
    assert waiting_for(behind) == concurrency("k")

    runs.cancel(workspace_id, holder)  # let go, not yet claimed: its slot frees
    assert released([holder, parked, behind]) == [behind]
    assert execute(behind) is RunStatus.COMPLETED


def _claim_behind(run_id: UUID, change: str) -> Any:
    """A gated claim that starts while another transaction holds the run's row (`change`,
    not yet committed): the claim's snapshot still sees the run claimable. Returns what
    the claim answered once that transaction committed."""
    answer: dict[str, Any] = {}
    holder = db.engine().raw_connection()
    try:
        holder.cursor().execute(change, (str(run_id),))

        def claim() -> None:
            with db.hot_connection() as conn:
                answer["claim"] = gate.claim(conn, run_id, "other")

        thread = threading.Thread(target=claim)
        thread.start()
        wait_for(_waits_on_a_lock, 10, "the claim to wait on the row")
        holder.commit()
        thread.join(10)
    finally:
        holder.close()
    return answer["claim"]


def _waits_on_a_lock() -> bool:
    with db.unit_of_work() as conn:
        waiting = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(waiting)


def test_a_claim_that_waited_on_a_cancel_does_not_start_the_cancelled_run(
    isolated_queues: str, make_stream: Any, workspace_id: UUID
) -> None:
    limits.put(workspace_id, "k", 5, None)
    run_id = create(workspace_id, keyed(make_stream, "k"))  # released: its message is out
    cancel = (
        "UPDATE pipeline_executions SET status = 'cancelled', completed_at = now()"
        " WHERE id = %s AND status = 'pending'"
    )

    answer = _claim_behind(run_id, cancel)

    assert answer.row is None
    assert (run_row(run_id).status, run_row(run_id).attempt) == ("cancelled", 0)


def test_a_duplicate_claim_that_waited_on_the_first_does_not_start_a_second_attempt(
    isolated_queues: str, make_stream: Any, workspace_id: UUID
) -> None:
    # Gated by a workspace cap that is lifted: the claim then takes no lock at all.
    workspace_service.set_max_concurrent(WORKSPACE, 1)
    run_id = create(workspace_id, UUID(make_stream("builtin.noop")["id"]))
    workspace_service.set_max_concurrent(WORKSPACE, None)
    first_claim = (
        "UPDATE pipeline_executions SET status = 'running', attempt = attempt + 1,"
        " worker = 'first', heartbeat_at = now() WHERE id = %s AND status = 'pending'"
    )

    answer = _claim_behind(run_id, first_claim)

    assert answer.row is None
    assert (run_row(run_id).attempt, run_row(run_id).worker) == (1, "first")


def test_a_release_leaves_runs_queued_by_overlap_alone(
    isolated_queues: str, make_stream: Any, workspace_id: UUID
) -> None:
    limits.put(workspace_id, "k", 2, None)
    first, queued = two_slots_of_a_queueing_stream(make_stream, "k")
    _set(first.id, status="running", attempt=1, heartbeat_at=sa.func.now())
    other = keyed(make_stream, "k")
    taken, parked = create(workspace_id, other), create(workspace_id, other)
    assert released([taken]) == [taken] and waiting_for(parked) == concurrency("k")

    gate.release(workspace_id, ["k"])  # a run waits on k: the release looks at the workspace

    # The queued run still waits for its stream's older run, and holds no slot of k.
    assert waiting_for(queued.id) == {"kind": "overlap", "key": None, "until": None}
    assert limits.get(workspace_id, "k").running == 1
    _set(taken, status="completed", completed_at=sa.func.now())
    gate.release(workspace_id, ["k"])
    assert released([parked]) == [parked]


def test_a_released_run_whose_message_was_lost_is_published_behind_a_busy_queue(
    isolated_queues: str, make_stream: Any, workspace_id: UUID, redis_client: Any
) -> None:
    from app import housekeeping

    limits.put(workspace_id, "k", 1, None)
    run_id = create(workspace_id, keyed(make_stream, "k"))  # released: it holds k's slot
    free = create(workspace_id, keyed(make_stream, "nolimit"))  # released, holding nothing
    empty_queue(redis_client)  # their messages are lost
    assert dispatch.publish(UUID(int=1))  # another run's message keeps the queue busy
    lease = get_settings().lease_seconds
    for stale in (run_id, free):
        _set(stale, updated_at=sa.text(f"now() - interval '{lease + 1} seconds'"))

    # Only the one that keeps others waiting: the other is merely behind the busy queue.
    assert housekeeping.republish() == 1
    assert str(run_id).encode() in b"".join(queued_messages(redis_client))


@pytest.mark.parametrize("capped", [False, True])
@pytest.mark.parametrize("keys", [[], ["a"], ["b", "a"]])
def test_a_run_made_from_its_stream_in_sql_parks_where_gate_parking_says(
    make_stream: Any, workspace_id: UUID, capped: bool, keys: list[str]
) -> None:
    """POST /runs creates a run in one statement, with gate.parking's rule in SQL."""
    stream = keyed(make_stream, *keys)
    owner = runs_store.Owner.workspace(workspace_id)
    request = runs_store.FromStream(owner, stream, "manual", {}, 3, None, None)
    with db.unit_of_work() as conn:
        cap = 2 if capped else None
        conn.execute(sa.update(workspaces_table).values(max_concurrent_runs=cap))
        row = runs_store.create_from_stream(conn, request)
        conn.rollback()
    assert row is not None
    assert row.waiting_for == gate.parking(keys, capped)
    assert row.gated is (gate.parking(keys, capped) is not None)
