"""Attempts never overlap (SPEC guarantee 9): the supervisor stops a pipeline that lost or
cannot renew its lease, whoever ends an attempt first owns its final write, queued runs wait
for every older run of their stream, and a message that comes early goes back.

The supervisors here run against real rows; only the process kill is recorded instead of
performed (the test process must survive it).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app import db
from app.models import pipeline_executions
from app.runs import dispatch, executor, store
from app.runs.outcome import Outcome
from app.runs.supervisor import Limits, Supervisor, Ticket, lease_budget
from app.settings import get_settings
from tests.fixtures.broker import queued_messages
from tests.fixtures.queries import set_run as _set
from tests.fixtures.services import run_row, unpublished_run, wait_for


def _claim(run_id: UUID) -> store.Claimed:
    with db.hot_connection() as conn:
        claimed = store.claim(conn, run_id, "w").claimed
    assert claimed is not None
    return claimed


class Kills:
    """Records the signals a supervisor sends to its own process."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    def __call__(self, pid: int, signum: int) -> None:
        self.sent.append(signum)


@pytest.fixture
def kills() -> Kills:
    return Kills()


@pytest.fixture
def supervisor(kills: Kills) -> Supervisor:
    settings = get_settings()
    watched = Supervisor(
        settings.heartbeat_seconds, settings.cancel_grace_seconds, settings.lease_seconds, kills
    )
    watched.allow_termination()
    return watched


class Attempt:
    """A claimed run under supervision, its pipeline 'running' until `finish()`."""

    def __init__(self, supervisor: Supervisor, claimed: store.Claimed, sent: float) -> None:
        self.ended: list[str] = []
        self.ticket: Ticket | None = None
        self._done = threading.Event()
        self._entered = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(supervisor, claimed, sent))

    def _run(self, supervisor: Supervisor, claimed: store.Claimed, sent: float) -> None:
        limits = Limits(None, None)
        with supervisor.track(
            claimed.id, claimed.attempt, threading.Event(), limits, self.ended.append, sent
        ) as ticket:
            self.ticket = ticket
            self._entered.set()
            self._done.wait(60)

    def start(self) -> Attempt:
        self._thread.start()
        self._entered.wait(5)
        return self

    def finish(self) -> None:
        self._done.set()
        self._thread.join(5)


@pytest.fixture
def attempts() -> Iterator[list[Attempt]]:
    started: list[Attempt] = []
    yield started
    for attempt in started:
        attempt.finish()


def test_a_lost_lease_terminates_the_pipeline_after_the_grace(
    make_stream: Any, supervisor: Supervisor, kills: Kills, attempts: list[Attempt]
) -> None:
    run_id = unpublished_run(UUID(make_stream()["id"]))
    sent = time.monotonic()
    claimed = _claim(run_id)
    attempts.append(Attempt(supervisor, claimed, sent).start())
    _set(run_id, attempt=claimed.attempt + 1)  # rescued and claimed by another worker

    grace = get_settings().cancel_grace_seconds
    heartbeat = get_settings().heartbeat_seconds
    wait_for(lambda: kills.sent, grace + heartbeat + 2, "the lost run's process to be killed")
    assert kills.sent == [9]


def test_a_lease_that_cannot_be_renewed_stops_the_pipeline_before_it_expires(
    make_stream: Any, supervisor: Supervisor, kills: Kills, attempts: list[Attempt]
) -> None:
    run_id = unpublished_run(UUID(make_stream()["id"]))
    sent = time.monotonic()
    claimed = _claim(run_id)
    # Another session holds the row: every heartbeat now waits, as on a cut-off network.
    with db.engine().connect() as blocker, blocker.begin():
        blocker.execute(
            sa.select(pipeline_executions.c.id)
            .where(pipeline_executions.c.id == run_id)
            .with_for_update()
        )
        attempts.append(Attempt(supervisor, claimed, sent).start())
        wait_for(lambda: kills.sent, get_settings().lease_seconds + 1, "the pipeline's kill")
        killed_after = time.monotonic() - sent
        heartbeat_at = blocker.execute(
            sa.select(sa.func.extract("epoch", sa.func.clock_timestamp() - sa.text("heartbeat_at")))
            .select_from(pipeline_executions)
            .where(pipeline_executions.c.id == run_id)
        ).scalar_one()
    budget = lease_budget(get_settings().lease_seconds)
    assert budget <= killed_after < get_settings().lease_seconds
    assert float(heartbeat_at) < get_settings().lease_seconds  # its lease had not expired yet


def _attempt_under_way(make_stream: Any, supervisor: Supervisor) -> tuple[UUID, Attempt, Ticket]:
    """A claimed run whose attempt the supervisor tracks, with its ticket."""
    run_id = unpublished_run(UUID(make_stream()["id"]))
    attempt = Attempt(supervisor, _claim(run_id), time.monotonic()).start()
    assert attempt.ticket is not None
    return run_id, attempt, attempt.ticket


def test_a_soft_limit_never_interrupts_a_run_that_already_returned(
    make_stream: Any, supervisor: Supervisor, kills: Kills
) -> None:
    run_id, attempt, ticket = _attempt_under_way(make_stream, supervisor)
    attempt.finish()  # the pipeline returned just after the watchdog saw its deadline

    supervisor._interrupt(run_id, ticket)
    supervisor._end(run_id, ticket, "timeout")
    assert kills.sent == []
    assert attempt.ended == []
    assert not ticket.taken


def test_an_attempt_the_supervisor_ended_is_not_written_again(
    make_stream: Any, supervisor: Supervisor, kills: Kills
) -> None:
    run_id, attempt, ticket = _attempt_under_way(make_stream, supervisor)

    supervisor._end(run_id, ticket, "timeout")  # the hard limit came first
    wait_for(lambda: attempt.ended == ["timeout"], 5, "the supervisor's final write")
    wait_for(lambda: kills.sent == [9], 5, "the process to be terminated")
    attempt.finish()
    assert ticket.taken  # so the executor drops the pipeline's own outcome


def _scheduled(stream_id: UUID, **values: Any) -> UUID:
    return unpublished_run(
        stream_id, run_type="scheduled", scheduled_for=sa.func.clock_timestamp(), **values
    )


def test_a_queued_run_waits_for_every_older_run_not_only_the_newest(make_stream: Any) -> None:
    stream_id = UUID(make_stream()["id"])
    older = _scheduled(stream_id)
    _set(older, status="running", attempt=1, heartbeat_at=sa.func.now())
    manual = unpublished_run(stream_id)
    queued = _scheduled(stream_id, after_run=manual)  # the newest live run was the manual one

    _set(manual, status="completed", completed_at=sa.func.now())
    with db.hot_connection() as conn:
        assert store.claim(conn, queued, "w").claimed is None  # the older run still runs
        finished = store.finish(conn, older, 1, Outcome.completed({}))
    assert finished is not None and finished.released == [queued]
    assert _claim(queued).id == queued


def test_a_run_queued_behind_a_run_cancelled_meanwhile_still_waits(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream_id = UUID(make_stream()["id"])
    running = _scheduled(stream_id)
    _set(running, status="running", attempt=1, heartbeat_at=sa.func.now())
    waiting = _scheduled(stream_id, after_run=running)
    assert api.delete(f"/runs/{waiting}", headers=auth).json()["status"] == "cancelled"
    behind_cancelled = _scheduled(stream_id, after_run=waiting)  # the tick's stale choice

    with db.hot_connection() as conn:
        assert store.claim(conn, behind_cancelled, "w").claimed is None
    assert run_row(behind_cancelled).status == "pending"


def test_a_message_that_comes_before_the_backoff_ends_goes_back_for_the_rest(
    isolated_queues: str, make_stream: Any, redis_client: redis.Redis
) -> None:
    run_id = unpublished_run(UUID(make_stream()["id"]))
    _set(run_id, status="retrying", attempt=1, next_attempt_at=sa.text("now() + interval '3 s'"))

    assert executor.execute(run_id, "w") is None

    [raw] = queued_messages(redis_client)
    message = json.loads(raw)
    assert message["headers"]["id"] == str(run_id)
    assert message["headers"]["eta"] is not None  # published again with the time left
    assert run_row(run_id).status == "retrying"


def test_a_queued_run_also_waits_for_the_run_it_was_queued_behind(make_stream: Any) -> None:
    stream_id = UUID(make_stream()["id"])
    queued = _scheduled(stream_id)  # its tick's transaction began before the manual run
    manual = unpublished_run(stream_id)
    _set(manual, status="running", attempt=1, heartbeat_at=sa.func.now())
    _set(queued, after_run=manual)

    with db.hot_connection() as conn:
        assert store.claim(conn, queued, "w").claimed is None


def test_a_queued_run_whose_wake_up_was_lost_is_published_behind_a_busy_queue(
    isolated_queues: str, make_stream: Any, redis_client: redis.Redis
) -> None:
    from app import housekeeping

    stream_id = UUID(make_stream()["id"])
    ended = _scheduled(stream_id)
    _set(ended, status="completed", completed_at=sa.func.now())
    queued = _scheduled(stream_id, after_run=ended)
    busy = unpublished_run(UUID(make_stream()["id"]))
    lease = get_settings().lease_seconds
    for run_id in (queued, busy):
        _set(run_id, updated_at=sa.text(f"now() - interval '{lease + 1} seconds'"))
    redis_client.lpush(
        dispatch.queue_lists(get_settings().runs_queue)[1], b"a message ahead of them"
    )

    assert housekeeping.republish() == 1
    queued_ids = [
        json.loads(raw)["headers"]["id"]
        for raw in queued_messages(redis_client)
        if raw.startswith(b"{")
    ]
    assert queued_ids == [str(queued)]
