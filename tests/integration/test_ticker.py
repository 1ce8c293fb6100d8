"""The ticker against real Postgres, with a fixed clock: slots, policies, ticks, duplicates."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app import db
from app.models import pipeline_executions, research_streams
from app.schedules import ticker
from app.streams import store as streams_store
from tests.fixtures.queries import copy_stream, runs_of, ticks_of
from tests.fixtures.services import wait_for

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def set_next(stream_id: str, when: datetime | None) -> None:
    with db.unit_of_work() as conn:
        conn.execute(
            sa.update(research_streams)
            .where(research_streams.c.id == UUID(stream_id))
            .values(next_scheduled_run=when)
        )


def stream_row(stream_id: str) -> Any:
    with db.unit_of_work() as conn:
        return conn.execute(
            sa.select(research_streams).where(research_streams.c.id == UUID(stream_id))
        ).one()


def test_due_interval_stream_fires_one_run_and_advances(make_stream: Any) -> None:
    stream = make_stream(schedule_config={"interval_seconds": 60})
    set_next(stream["id"], T0)

    report = ticker.tick(now=T0 + timedelta(seconds=0.2))

    assert (report.streams, report.fired) == (1, 1)
    [run] = runs_of(stream["id"])
    assert (run.run_type, run.scheduled_for, run.pipeline) == ("scheduled", T0, "builtin.noop")
    assert run.status in ("pending", "running", "completed")  # the session worker may take it
    assert [(t.scheduled_for, t.outcome, t.execution_id) for t in ticks_of(stream["id"])] == [
        (T0, "fired", run.id)
    ]
    row = stream_row(stream["id"])
    assert row.next_scheduled_run == T0 + timedelta(seconds=60)
    assert row.last_scheduled_run == T0


def test_stream_not_yet_due_is_left_alone(make_stream: Any) -> None:
    stream = make_stream(schedule_config={"interval_seconds": 60})
    set_next(stream["id"], T0)
    assert ticker.tick(now=T0 - timedelta(seconds=1)).streams == 0
    assert runs_of(stream["id"]) == []


def test_cron_stream_fires_and_moves_to_its_next_slot(make_stream: Any) -> None:
    stream = make_stream(schedule_config={"cron": "0 6 * * *", "timezone": "Asia/Kathmandu"})
    slot = datetime(2026, 3, 2, 0, 15, tzinfo=UTC)  # 06:00 in Kathmandu
    set_next(stream["id"], slot)

    ticker.tick(now=slot + timedelta(seconds=0.5))

    assert [run.scheduled_for for run in runs_of(stream["id"])] == [slot]
    assert stream_row(stream["id"]).next_scheduled_run == slot + timedelta(days=1)


def test_misfire_run_once_fires_one_catch_up_run_and_records_missed_slots(make_stream: Any) -> None:
    stream = make_stream(schedule_config={"interval_seconds": 60})
    set_next(stream["id"], T0)

    ticker.tick(now=T0 + timedelta(minutes=10, seconds=5))  # beat was away for ten minutes

    [run] = runs_of(stream["id"])
    assert run.scheduled_for == T0 + timedelta(minutes=10)
    ticks = ticks_of(stream["id"])
    assert [t.outcome for t in ticks] == ["missed"] * 10 + ["fired"]
    assert ticks[0].scheduled_for == T0
    assert "10 slot(s)" in ticks[0].reason
    assert "catch-up" in ticks[-1].reason
    assert stream_row(stream["id"]).next_scheduled_run == T0 + timedelta(minutes=11)


def test_misfire_skip_records_missed_slots_and_fires_nothing(make_stream: Any) -> None:
    stream = make_stream(schedule_config={"interval_seconds": 600, "misfire": "skip"})
    set_next(stream["id"], T0)

    ticker.tick(now=T0 + timedelta(minutes=30, seconds=90))  # the 06:30 slot is 90 s late

    assert runs_of(stream["id"]) == []
    ticks = ticks_of(stream["id"])
    assert [t.outcome for t in ticks] == ["missed"] * 4
    assert "late and misfire is 'skip'" in ticks[-1].reason
    assert stream_row(stream["id"]).next_scheduled_run == T0 + timedelta(minutes=40)


def test_misfire_skip_still_fires_a_slot_that_is_only_a_little_late(make_stream: Any) -> None:
    stream = make_stream(schedule_config={"interval_seconds": 60, "misfire": "skip"})
    set_next(stream["id"], T0)
    ticker.tick(now=T0 + timedelta(seconds=3))
    assert len(runs_of(stream["id"])) == 1


def test_overlap_skip_records_skipped_slot_while_a_run_is_live(
    isolated_queues: str, make_stream: Any
) -> None:
    # No worker may take the first run: the test sets its status itself.
    stream = make_stream(schedule_config={"interval_seconds": 60})
    set_next(stream["id"], T0)
    ticker.tick(now=T0)
    [first] = runs_of(stream["id"])
    _set_status(first.id, "running")

    ticker.tick(now=T0 + timedelta(seconds=60))

    assert len(runs_of(stream["id"])) == 1
    last = ticks_of(stream["id"])[-1]
    assert (last.outcome, last.execution_id) == ("skipped_overlap", None)
    assert str(first.id) in last.reason


def test_overlap_allow_fires_alongside_a_live_run(isolated_queues: str, make_stream: Any) -> None:
    # No worker may take the first run: the test sets its status itself.
    stream = make_stream(schedule_config={"interval_seconds": 60, "overlap": "allow"})
    set_next(stream["id"], T0)
    ticker.tick(now=T0)
    _set_status(runs_of(stream["id"])[0].id, "running")
    ticker.tick(now=T0 + timedelta(seconds=60))
    assert len(runs_of(stream["id"])) == 2


def test_overlap_queue_creates_a_run_that_waits_for_the_live_one(
    isolated_queues: str, make_stream: Any
) -> None:
    # No worker may take the first run: the test sets its status itself.
    stream = make_stream(schedule_config={"interval_seconds": 60, "overlap": "queue"})
    set_next(stream["id"], T0)
    ticker.tick(now=T0)
    first = runs_of(stream["id"])[0]
    _set_status(first.id, "running")

    ticker.tick(now=T0 + timedelta(seconds=60))

    second = runs_of(stream["id"])[1]
    assert second.after_run == first.id
    assert "queued behind" in ticks_of(stream["id"])[-1].reason


def test_disabled_stream_never_fires(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream(schedule_config={"interval_seconds": 60})
    api.patch(
        f"/streams/{stream['id']}", json={"schedule_config": {"enabled": False}}, headers=auth
    )
    assert ticker.tick(now=datetime.now(UTC) + timedelta(days=1)).streams == 0
    assert runs_of(stream["id"]) == []


def test_two_beats_ticking_at_once_create_each_run_once(make_stream: Any) -> None:
    config = {"interval_seconds": 60, "overlap": "allow"}
    streams = [make_stream(schedule_config=config) for _ in range(30)]
    for stream in streams:
        set_next(stream["id"], T0)
    in_step = threading.Barrier(4)
    fired: list[int] = []

    def beat() -> None:
        for second in range(0, 181, 60):
            in_step.wait()  # four beats tick at the same moment, with the same clock
            fired.append(ticker.tick(now=T0 + timedelta(seconds=second)).fired)

    threads = [threading.Thread(target=beat) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Four slots per stream came due (T0 .. T0+180s): each fired exactly once, whichever
    # beat claimed it, and each left exactly one tick.
    assert sum(fired) == 30 * 4
    for stream in streams:
        assert [run.scheduled_for for run in runs_of(stream["id"])] == [
            T0 + timedelta(seconds=s) for s in range(0, 181, 60)
        ]
        assert [t.outcome for t in ticks_of(stream["id"])] == ["fired"] * 4


def test_ticks_endpoint_lists_newest_first(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream(schedule_config={"interval_seconds": 60})
    set_next(stream["id"], T0)
    ticker.tick(now=T0 + timedelta(minutes=3, seconds=30))
    ticks = api.get(f"/streams/{stream['id']}/ticks", headers=auth).json()
    assert [t["outcome"] for t in ticks] == ["fired", "missed", "missed", "missed"]
    assert [datetime.fromisoformat(t["scheduled_for"]) for t in ticks] == [
        T0 + timedelta(minutes=m) for m in (3, 2, 1, 0)
    ]
    assert ticks[0]["execution_id"] is not None


def _set_status(run_id: UUID, status: str) -> None:
    with db.unit_of_work() as conn:
        conn.execute(
            sa.update(pipeline_executions)
            .where(pipeline_executions.c.id == run_id)
            .values(status=status, attempt=1 if status == "running" else 0)
        )


def test_a_tick_past_its_budget_stops_after_a_batch_and_the_next_goes_on(
    isolated_queues: str, make_stream: Any
) -> None:
    """Beat gives a tick a third of its lock's timeout: a tick of many due streams must not
    outlive the lock, and what it leaves is handled by the next."""
    first = make_stream(schedule_config={"interval_seconds": 60, "overlap": "allow"})["id"]
    copy_stream(first, ticker.BATCH + 200 - 1, T0)

    spent = ticker.tick(now=T0, budget_seconds=0)
    rest = ticker.tick(now=T0, budget_seconds=0)

    assert (spent.streams, rest.streams) == (ticker.BATCH, 200)
    assert spent.next_due == T0  # what it left is due at once
    assert ticker.tick(now=T0, budget_seconds=0).streams == 0


def test_a_batch_stalled_in_its_transaction_lets_go_of_its_streams(make_stream: Any) -> None:
    """A beat stopped or cut off mid-batch holds its streams' row locks, and other beats skip
    them; Postgres ends such a transaction once it has idled for the batch's bound."""
    stream = make_stream(schedule_config={"interval_seconds": 60})
    set_next(stream["id"], T0)
    with db.engine().connect() as stalled:
        stalled.begin()
        streams_store.begin_batch(stalled, idle_seconds=1)
        assert len(streams_store.claim_due(stalled, T0, ticker.BATCH)) == 1
        assert ticker.tick(now=T0).streams == 0  # locked by the stalled batch: skipped

        report = wait_for(
            lambda: (report := ticker.tick(now=T0)).streams and report, 15, "the stream's lock"
        )
        assert report.fired == 1
        with pytest.raises(sa.exc.DBAPIError, match="idle-in-transaction timeout"):
            stalled.execute(sa.text("SELECT 1"))
    assert len(runs_of(stream["id"])) == 1
