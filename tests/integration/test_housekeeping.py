"""The sweep's rules against real Postgres and Redis: rescue, cancel grace, re-publish."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app import db, housekeeping
from app.runs import dispatch, store
from app.settings import get_settings
from tests.fixtures.broker import empty_queue, queued_messages
from tests.fixtures.queries import set_run as _set
from tests.fixtures.services import run_row, unpublished_run


def _ago(seconds: float) -> Any:
    return sa.text(f"now() - interval '{seconds} seconds'")


def _queued(client: redis.Redis, run_id: UUID) -> bool:
    return any(str(run_id).encode() in message for message in queued_messages(client))


def test_expired_lease_goes_back_to_retrying_and_is_published(
    isolated_queues: str, make_stream: Any, redis_client: redis.Redis
) -> None:
    run_id = unpublished_run(make_stream()["id"])
    _set(run_id, status="running", attempt=1, worker="w@gone", heartbeat_at=_ago(60))

    assert housekeeping.rescue() == 1

    row = run_row(run_id)
    assert (row.status, row.attempt, row.error_type) == ("retrying", 1, "lease_expired")
    assert "w@gone" in row.error
    assert _queued(redis_client, run_id)


def test_expired_lease_on_the_last_attempt_fails(make_stream: Any) -> None:
    run_id = unpublished_run(make_stream()["id"])
    _set(run_id, status="running", attempt=3, heartbeat_at=_ago(60))
    housekeeping.rescue()
    row = run_row(run_id)
    assert (row.status, row.error_type) == ("failed", "lease_expired")
    assert row.completed_at is not None


def test_fresh_heartbeat_is_left_alone(make_stream: Any) -> None:
    run_id = unpublished_run(make_stream()["id"])
    _set(run_id, status="running", attempt=1, heartbeat_at=sa.func.now())
    assert housekeeping.rescue() == 0
    assert run_row(run_id).status == "running"


def test_running_run_past_its_cancel_grace_ends_cancelled(make_stream: Any) -> None:
    run_id = unpublished_run(make_stream()["id"])
    grace = get_settings().cancel_grace_seconds
    _set(
        run_id,
        status="running",
        attempt=1,
        heartbeat_at=sa.func.now(),
        cancel_requested_at=_ago(grace + 1),
    )
    housekeeping.rescue()
    row = run_row(run_id)
    assert (row.status, row.error_type) == ("cancelled", "cancelled")


def test_unclaimed_runs_are_published_again_only_behind_an_empty_queue(
    isolated_queues: str, make_stream: Any, redis_client: redis.Redis
) -> None:
    lease = get_settings().lease_seconds
    stream = make_stream()["id"]
    run_id, other = unpublished_run(stream), unpublished_run(stream)
    _set(run_id, updated_at=_ago(lease + 1))
    assert dispatch.publish(other)  # another run's message waits in the queue

    assert housekeeping.republish() == 0  # a busy queue: the run is only waiting

    empty_queue(redis_client)
    assert housekeeping.republish() == 1
    assert _queued(redis_client, run_id)
    assert housekeeping.republish() == 0  # tried again only after another lease


def test_retrying_run_is_not_claimed_before_its_backoff(make_stream: Any) -> None:
    run_id = unpublished_run(make_stream()["id"])
    _set(
        run_id, status="retrying", attempt=1, next_attempt_at=sa.text("now() + interval '1 minute'")
    )
    with db.hot_connection() as conn:
        answer = store.claim(conn, run_id, "w")
    assert answer.claimed is None
    assert answer.wait_seconds is not None and 55 < answer.wait_seconds <= 60
    _set(run_id, next_attempt_at=sa.func.now())
    with db.hot_connection() as conn:
        claimed = store.claim(conn, run_id, "w").claimed
    assert claimed is not None and claimed.attempt == 2


def test_cancelling_a_queued_run_keeps_the_queue_in_order(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream()
    first, second, third = (unpublished_run(stream["id"]) for _ in range(3))
    _set(first, status="running", attempt=1, heartbeat_at=sa.func.now())
    _set(second, after_run=first)
    _set(third, after_run=second)

    assert api.delete(f"/runs/{second}", headers=auth).json()["status"] == "cancelled"

    with db.hot_connection() as conn:
        assert store.claim(conn, third, "w").claimed is None  # still behind the running one
    _set(first, status="completed", completed_at=sa.func.now())
    with db.hot_connection() as conn:
        assert store.claim(conn, third, "w").claimed is not None
