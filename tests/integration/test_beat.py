"""`celery -A app beat` as a real process: firing, leadership, Redis loss, pausing, overlap.

Each test gives its processes a queue prefix of their own, so its beat's lock, its queues and
its workers are its alone.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from itertools import pairwise
from typing import Any

import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app import db
from app.models import research_streams
from tests.fixtures.queries import runs_of, ticks_of
from tests.fixtures.services import wait_for


def _leading(process: Any) -> bool:
    return "beat: leading" in process.log()


def test_beat_fires_interval_streams_and_a_worker_completes_them(
    isolated_queues: str, make_stream: Any, spawn: Any
) -> None:
    stream = make_stream(schedule_config={"interval_seconds": 1})
    spawn("worker", "-c", "2")
    spawn("beat")

    def completed() -> list[Any]:
        return [run for run in runs_of(stream["id"]) if run.status == "completed"]

    runs = wait_for(lambda: len(completed()) >= 4 and completed(), 20, "four completed runs")
    assert all(run.run_type == "scheduled" for run in runs)
    slots = [run.scheduled_for for run in runs]
    assert all((b - a) % timedelta(seconds=1) == timedelta(0) for a, b in pairwise(slots))
    # The first slot may have come due while beat was starting; the others are on time.
    lags = [(run.created_at - run.scheduled_for).total_seconds() for run in runs[1:]]
    assert max(lags) < 0.5, lags
    fired = {t.execution_id for t in ticks_of(stream["id"]) if t.outcome == "fired"}
    assert {run.id for run in runs} <= fired


def test_two_beats_one_leads_and_no_slot_runs_twice(
    isolated_queues: str, make_stream: Any, spawn: Any
) -> None:
    streams = [
        make_stream(schedule_config={"interval_seconds": 1, "overlap": "allow"}) for _ in range(5)
    ]
    first, second = spawn("beat"), spawn("beat")
    wait_for(lambda: sum(len(runs_of(s["id"])) for s in streams) >= 25, 20, "25 scheduled runs")

    assert _leading(first) != _leading(second)
    for stream in streams:  # one tick per slot, and each fired tick has a run of its own
        ticks = ticks_of(stream["id"])
        assert len({t.scheduled_for for t in ticks}) == len(ticks)
        fired = {t.execution_id for t in ticks if t.outcome == "fired"}
        assert fired <= {run.id for run in runs_of(stream["id"])}

    leader = first if _leading(first) else second
    leader.stop()
    standby = second if leader is first else first
    before = sum(len(runs_of(s["id"])) for s in streams)
    wait_for(lambda: _leading(standby), 45, "the standby to lead")
    wait_for(
        lambda: sum(len(runs_of(s["id"])) for s in streams) >= before + 10,
        15,
        "runs from the new leader",
    )


def test_a_beat_that_does_not_lead_still_fires_streams_but_runs_no_housekeeping(
    isolated_queues: str, make_stream: Any, spawn: Any, redis_client: redis.Redis
) -> None:
    """Beats share the ticking (each claims due streams the others have not locked); only
    the one holding RedBeat's lock runs housekeeping. Here another beat holds the lock."""
    lock_key = f"{isolated_queues}:redbeat::lock"
    redis_client.set(lock_key, "another beat", ex=120)
    stream = make_stream(schedule_config={"interval_seconds": 1, "overlap": "allow"})
    beat = spawn("beat")

    runs = wait_for(lambda: len(runs_of(stream["id"])) >= 3 and runs_of(stream["id"]), 20, "runs")
    assert "run(s) created" in beat.log()
    assert not _leading(beat)
    assert redis_client.get(lock_key) == b"another beat"
    assert not redis_client.exists(f"{isolated_queues}:redbeat:runway-sweep")
    ticks = ticks_of(stream["id"])
    assert len({t.scheduled_for for t in ticks}) == len(ticks)
    assert {t.execution_id for t in ticks if t.outcome == "fired"} <= {run.id for run in runs}


def test_a_beat_that_cannot_reach_redis_creates_no_runs(
    isolated_queues: str, make_stream: Any, spawn: Any
) -> None:
    """Its runs could not be sent: the slots wait for a beat that can send them, and the
    streams' misfire policies decide about them then."""
    stream = make_stream(schedule_config={"interval_seconds": 1, "overlap": "allow"})
    nowhere = "redis://127.0.0.1:1/0"
    beat = spawn("beat", env={"REDIS_URL": nowhere, "REDBEAT_REDIS_URL": nowhere})

    wait_for(lambda: beat.log().count("cannot take the lead") >= 3, 30, "three failed ticks")
    assert runs_of(stream["id"]) == []
    assert ticks_of(stream["id"]) == []


def test_flushdb_while_beat_runs_schedules_go_on_in_the_same_process(
    isolated_queues: str, make_stream: Any, spawn: Any, redis_client: redis.Redis
) -> None:
    stream = make_stream(schedule_config={"interval_seconds": 1, "overlap": "allow"})
    beat = spawn("beat")
    wait_for(lambda: len(runs_of(stream["id"])) >= 2, 15, "runs before the flush")
    sweep_key = f"{isolated_queues}:redbeat:runway-sweep"
    wait_for(lambda: redis_client.exists(sweep_key), 10, "the sweep entry")

    redis_client.flushdb()
    flushed_at = len(runs_of(stream["id"]))

    wait_for(lambda: len(runs_of(stream["id"])) >= flushed_at + 3, 15, "runs after the flush")
    assert beat.alive()
    wait_for(lambda: redis_client.exists(sweep_key), 10, "the sweep entry to be re-created")
    assert "lost the lead" in beat.log()


def test_pausing_stops_runs_at_once(
    isolated_queues: str, api: TestClient, auth: dict[str, str], make_stream: Any, spawn: Any
) -> None:
    stream = make_stream(schedule_config={"interval_seconds": 1, "overlap": "allow"})
    clock = make_stream(schedule_config={"interval_seconds": 1, "overlap": "allow"})
    spawn("beat")
    wait_for(lambda: len(runs_of(stream["id"])) >= 2, 15, "runs before pausing")

    paused = api.patch(
        f"/streams/{stream['id']}", json={"schedule_config": {"enabled": False}}, headers=auth
    )
    assert paused.json()["next_scheduled_run"] is None
    count = len(runs_of(stream["id"]))
    ticks_then = len(runs_of(clock["id"]))
    # The other stream is the clock: three more of its slots means beat ticked past ours.
    wait_for(lambda: len(runs_of(clock["id"])) >= ticks_then + 3, 15, "three more ticks")
    assert len(runs_of(stream["id"])) == count


def test_overlap_skip_never_lets_two_runs_of_a_stream_overlap(
    isolated_queues: str, make_stream: Any, spawn: Any
) -> None:
    stream = make_stream(
        "builtin.sleep", params={"seconds": 2.5}, schedule_config={"interval_seconds": 1}
    )
    spawn("worker", "-c", "3")
    spawn("beat")

    wait_for(
        lambda: len([r for r in runs_of(stream["id"]) if r.status == "completed"]) >= 2,
        30,
        "two completed runs",
    )
    runs = [r for r in runs_of(stream["id"]) if r.status == "completed"]
    spans = sorted((run.started_at, run.completed_at) for run in runs)
    assert all(end <= next_start for (_, end), (next_start, _) in pairwise(spans))
    outcomes = {t.outcome for t in ticks_of(stream["id"])}
    assert "skipped_overlap" in outcomes


def test_busy_workers_do_not_delay_other_streams_scheduling(
    isolated_queues: str, make_stream: Any, spawn: Any
) -> None:
    hog = make_stream(
        "builtin.sleep",
        params={"seconds": 60},
        schedule_config={"interval_seconds": 1, "overlap": "allow"},
    )
    other = make_stream(schedule_config={"interval_seconds": 1})
    spawn("worker", "-c", "1")
    spawn("beat")
    wait_for(lambda: any(r.status == "running" for r in runs_of(hog["id"])), 20, "the hog to run")
    # Slots that came due while beat was starting are late for that reason; count the rest.
    with db.unit_of_work() as conn:
        busy_since = conn.execute(sa.select(sa.func.now())).scalar_one()

    def slots_while_busy() -> list[Any]:
        return [t for t in ticks_of(other["id"]) if t.scheduled_for > busy_since]

    ticks = wait_for(
        lambda: len(slots_while_busy()) >= 5 and slots_while_busy(),
        15,
        "five slots of the other stream while the worker is busy",
    )
    lags = [(t.created_at - t.scheduled_for).total_seconds() for t in ticks]
    assert max(lags) < 1.0, lags
    assert {t.outcome for t in ticks} <= {"fired", "skipped_overlap"}
    pending = [r for r in runs_of(other["id"]) if r.status == "pending"]
    assert pending, "the other stream's run waits behind the hog, but it was created on time"


def test_auto_pause_after_consecutive_failures(
    isolated_queues: str, api: TestClient, auth: dict[str, str], make_stream: Any, spawn: Any
) -> None:
    stream = make_stream(
        "builtin.fail", schedule_config={"interval_seconds": 1, "pause_after_failures": 2}
    )
    spawn("worker", "-c", "2")
    spawn("beat")

    shown = wait_for(
        lambda: (
            (s := api.get(f"/streams/{stream['id']}", headers=auth).json())["paused_reason"] and s
        ),
        30,
        "the stream to pause itself",
    )
    assert shown["schedule_config"]["enabled"] is False
    assert shown["next_scheduled_run"] is None
    assert "2 consecutive failed" in shown["paused_reason"]
    failed = [r for r in runs_of(stream["id"]) if r.status == "failed"]
    assert len(failed) >= 2

    resumed = api.patch(
        f"/streams/{stream['id']}", json={"schedule_config": {"enabled": True}}, headers=auth
    ).json()
    assert resumed["paused_reason"] is None
    assert resumed["next_scheduled_run"] is not None
    with db.unit_of_work() as conn:
        row = conn.execute(
            sa.select(research_streams.c.paused_reason).where(
                research_streams.c.id == uuid.UUID(stream["id"])
            )
        ).scalar()
    assert row is None
