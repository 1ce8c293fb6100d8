"""Bulk cancel and retry (`POST /runs/cancel`, `POST /runs/retry`, app/runs/bulk.py) against
real Postgres and Redis, through the HTTP API.

Waiting runs are real rows of the runs service or pending runs whose message was never sent
(`unpublished_run`, on queues of the test's own); ended runs to retry are written as a worker
would have left them (status, attempt, error, completed_at), in one statement, so a few
hundred cost little; their retries are real runs the in-process worker executes. A second
workspace's runs sit beside the first's in every test of isolation, and must stay untouched.
(Cancelling runs that are running, which needs a worker with five slots, is in
tests/faults/test_bulk_cancel.py.)
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app import db, workspaces
from app.limits import service as limits
from app.models import pipeline_executions, research_streams
from app.runs import bulk
from app.runs import service as runs_service
from app.states import RunStatus, RunType
from tests.fixtures.queries import runs_of, set_run
from tests.fixtures.services import run_row, unpublished_run, wait_for

RUN_TYPES = ("scheduled", "manual", "test")


def ended_runs(
    stream_id: UUID,
    count: int,
    status: str = "failed",
    run_types: tuple[str, ...] = ("manual",),
    completed_at: datetime | None = None,
    params: dict[str, Any] | None = None,
) -> list[UUID]:
    """`count` runs of the stream that ended `status` after 3 attempts (each `run_types[i %
    len]`; scheduled ones on hourly slots), as a worker would have left them."""
    with db.unit_of_work() as conn:
        stream = conn.execute(
            sa.select(research_streams).where(research_streams.c.id == stream_id)
        ).one()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    ended = completed_at or datetime.now(UTC)
    rows = []
    for index in range(count):
        run_type = run_types[index % len(run_types)]
        rows.append(
            {
                "id": uuid4(),
                "workspace_id": stream.workspace_id,
                "stream_id": stream_id,
                "run_type": run_type,
                "scheduled_for": base + timedelta(hours=index) if run_type == "scheduled" else None,
                "status": status,
                "pipeline": stream.pipeline,
                "params": stream.params if params is None else params,
                "attempt": 3,
                "max_attempts": 3,
                "error": "the database was down" if status == "failed" else "cancelled on request",
                "error_type": "RuntimeError" if status == "failed" else "cancelled",
                "started_at": ended - timedelta(seconds=1),
                "completed_at": ended + timedelta(microseconds=index),
            }
        )
    with db.unit_of_work() as conn:
        conn.execute(sa.insert(pipeline_executions), rows)
    return [row["id"] for row in rows]


def other_workspace(api: TestClient) -> tuple[dict[str, str], UUID]:
    """A second workspace's auth header and one of its streams."""
    headers = {"Authorization": f"Bearer {workspaces.create_key('globex', 'tests')[1]}"}
    response = api.post(
        "/streams", json={"name": "theirs", "pipeline": "builtin.noop"}, headers=headers
    )
    assert response.status_code == 201, response.text
    return headers, UUID(response.json()["id"])


def statuses(run_ids: list[UUID]) -> dict[str, int]:
    found: dict[str, int] = {}
    for run_id in run_ids:
        status = run_row(run_id).status
        found[status] = found.get(status, 0) + 1
    return found


def retries_of(run_ids: list[UUID]) -> list[Any]:
    with db.unit_of_work() as conn:
        return list(
            conn.execute(
                sa.select(pipeline_executions).where(pipeline_executions.c.retry_of.in_(run_ids))
            )
        )


def test_bulk_retry_of_200_failed_runs_creates_200_runs_that_complete(
    api: TestClient, auth: dict[str, str], make_stream: Any, worker: Any
) -> None:
    stream = UUID(make_stream("builtin.noop", schedule_config={"interval_seconds": 3600})["id"])
    originals = ended_runs(stream, 200, run_types=RUN_TYPES, params={"from": "original"})
    _, their_stream = other_workspace(api)
    theirs = ended_runs(their_stream, 3)

    response = api.post("/runs/retry", json={"status": "failed"}, headers=auth)

    assert (response.status_code, response.json()) == (202, {"created": 200, "more": False})
    retries = retries_of(originals)
    assert len(retries) == 200
    assert sorted(retry.retry_of for retry in retries) == sorted(originals)
    before = {row.id: row for row in runs_of(stream) if row.id in set(originals)}
    for retry in retries:
        original = before[retry.retry_of]
        expected_type = "manual" if original.run_type == "scheduled" else original.run_type
        assert (retry.run_type, retry.pipeline, retry.params, retry.scheduled_for) == (
            expected_type,
            "builtin.noop",
            {"from": "original"},
            None,
        )
    retry_ids = [retry.id for retry in retries]
    wait_for(lambda: statuses(retry_ids) == {"completed": 200}, 120, "200 retries to complete")
    assert statuses(originals) == {"failed": 200}

    again = api.post("/runs/retry", json={"status": "failed"}, headers=auth)
    assert (again.status_code, again.json()) == (202, {"created": 0, "more": False})
    assert retries_of(theirs) == [] and statuses(theirs) == {"failed": 3}
    assert len(retries_of(originals)) == 200


def test_bulk_retry_takes_1000_a_call_oldest_first_and_says_more(
    api: TestClient, auth: dict[str, str], make_stream: Any, isolated_queues: str
) -> None:
    stream = UUID(make_stream()["id"])
    originals = ended_runs(stream, 1001)

    first = api.post("/runs/retry", json={"status": "failed"}, headers=auth)
    assert (first.status_code, first.json()) == (202, {"created": 1000, "more": True})
    assert {retry.retry_of for retry in retries_of(originals)} == set(originals[:1000])

    second = api.post("/runs/retry", json={"status": "failed"}, headers=auth)
    assert second.json() == {"created": 1, "more": False}
    assert {retry.retry_of for retry in retries_of(originals)} == set(originals)


def test_bulk_retry_retries_only_the_runs_its_filter_selects(
    api: TestClient, auth: dict[str, str], make_stream: Any, isolated_queues: str
) -> None:
    mine, another = UUID(make_stream()["id"]), UUID(make_stream()["id"])
    long_ago = datetime(2026, 1, 5, tzinfo=UTC)
    old = ended_runs(mine, 2, completed_at=long_ago)
    recent = ended_runs(mine, 3, run_types=("manual", "test"))
    cancelled = ended_runs(mine, 2, status="cancelled")
    elsewhere = ended_runs(another, 2)
    already = ended_runs(mine, 1)
    retried_by_hand = runs_service.retry(run_row(already[0]).workspace_id, already[0])

    body = {
        "status": "failed",
        "stream_id": str(mine),
        "run_type": "manual",
        "completed_after": (long_ago + timedelta(days=1)).isoformat(),
    }
    response = api.post("/runs/retry", json=body, headers=auth)

    assert response.json() == {"created": 2, "more": False}
    assert {retry.retry_of for retry in retries_of(recent)} == {recent[0], recent[2]}
    assert retries_of([*old, *cancelled, *elsewhere]) == []
    assert [retry.id for retry in retries_of(already)] == [retried_by_hand.id]

    response = api.post(
        "/runs/retry", json={"status": "cancelled", "stream_id": str(mine)}, headers=auth
    )
    assert response.json() == {"created": 2, "more": False}
    assert {retry.retry_of for retry in retries_of(cancelled)} == set(cancelled)


def test_bulk_cancel_ends_every_matching_waiting_run_at_once(
    api: TestClient, auth: dict[str, str], make_stream: Any, isolated_queues: str
) -> None:
    stream, other = UUID(make_stream()["id"]), UUID(make_stream()["id"])
    pending = [unpublished_run(stream) for _ in range(5)]
    retrying = [unpublished_run(stream, status="retrying", attempt=1) for _ in range(2)]
    tests = [unpublished_run(stream, run_type="test") for _ in range(2)]
    spared = [unpublished_run(other) for _ in range(2)]
    done = unpublished_run(stream)
    set_run(done, status="completed", completed_at=sa.func.now())

    only_retrying = api.post("/runs/cancel", json={"status": ["retrying"]}, headers=auth)
    assert only_retrying.json() == {"cancelled": 2, "cancel_requested": 0}
    only_tests = api.post(
        "/runs/cancel", json={"stream_id": str(stream), "run_type": "test"}, headers=auth
    )
    assert only_tests.json() == {"cancelled": 2, "cancel_requested": 0}
    response = api.post("/runs/cancel", json={"stream_id": str(stream)}, headers=auth)

    assert (response.status_code, response.json()) == (
        200,
        {"cancelled": 5, "cancel_requested": 0},
    )
    for run_id in [*pending, *retrying, *tests]:
        row = run_row(run_id)
        assert (row.status, row.error_type, row.waiting_for) == ("cancelled", "cancelled", None)
        assert row.completed_at is not None and row.cancel_requested_at is not None
    assert statuses(spared) == {"pending": 2}
    assert run_row(done).status == "completed" and run_row(done).cancel_requested_at is None

    cutoff = datetime.now(UTC)
    newer = unpublished_run(other)
    before = api.post("/runs/cancel", json={"created_before": cutoff.isoformat()}, headers=auth)
    assert before.json() == {"cancelled": 2, "cancel_requested": 0}
    assert statuses(spared) == {"cancelled": 2} and run_row(newer).status == "pending"
    nothing = api.post("/runs/cancel", json={"stream_id": str(stream)}, headers=auth)
    assert nothing.json() == {"cancelled": 0, "cancel_requested": 0}


def test_bulk_cancel_of_a_limit_key_holder_lets_the_next_waiting_run_go(
    api: TestClient,
    auth: dict[str, str],
    make_stream: Any,
    workspace_id: UUID,
    isolated_queues: str,
) -> None:
    limits.put(workspace_id, "k", 1, None)
    holding = UUID(make_stream(limit_keys=["k"])["id"])
    queued = UUID(make_stream(limit_keys=["k"])["id"])
    holder = runs_service.create(workspace_id, holding, RunType.MANUAL, None).run.id
    parked = runs_service.create(workspace_id, queued, RunType.MANUAL, None).run.id
    assert run_row(holder).waiting_for is None
    assert run_row(parked).waiting_for == {"kind": "concurrency", "key": "k", "until": None}

    response = api.post("/runs/cancel", json={"stream_id": str(holding)}, headers=auth)

    assert response.json() == {"cancelled": 1, "cancel_requested": 0}
    wait_for(lambda: run_row(parked).waiting_for is None, 10, "the parked run to be released")
    assert run_row(parked).status == "pending"


def test_bulk_operations_never_touch_another_workspace_s_runs(
    api: TestClient, auth: dict[str, str], make_stream: Any, isolated_queues: str
) -> None:
    stream = UUID(make_stream()["id"])
    mine = [unpublished_run(stream) for _ in range(2)]
    my_failed = ended_runs(stream, 2)
    their_auth, their_stream = other_workspace(api)
    theirs = [unpublished_run(their_stream) for _ in range(3)]
    their_failed = ended_runs(their_stream, 2)

    by_their_stream = api.post("/runs/cancel", json={"stream_id": str(their_stream)}, headers=auth)
    assert by_their_stream.json() == {"cancelled": 0, "cancel_requested": 0}
    retry_theirs = api.post(
        "/runs/retry", json={"status": "failed", "stream_id": str(their_stream)}, headers=auth
    )
    assert retry_theirs.json() == {"created": 0, "more": False}
    cancel = api.post("/runs/cancel", json={"status": ["pending", "running"]}, headers=auth)
    retry = api.post("/runs/retry", json={"status": "failed"}, headers=auth)

    assert cancel.json() == {"cancelled": 2, "cancel_requested": 0}
    assert retry.json() == {"created": 2, "more": False}
    assert statuses(mine) == {"cancelled": 2} and len(retries_of(my_failed)) == 2
    for run_id in theirs:
        row = run_row(run_id)
        assert (row.status, row.cancel_requested_at) == ("pending", None)
    assert retries_of(their_failed) == []
    listed = api.get("/runs", params={"status": "pending"}, headers=their_auth).json()
    assert len(listed["items"]) == 3


@pytest.mark.parametrize(
    ("path", "body", "location"),
    [
        ("/runs/cancel", {}, ["body"]),
        ("/runs/cancel", {"stream_id": None}, ["body", "stream_id"]),
        ("/runs/cancel", {"status": None}, ["body", "status"]),
        ("/runs/cancel", {"run_type": None}, ["body", "run_type"]),
        ("/runs/cancel", {"created_before": None}, ["body", "created_before"]),
        ("/runs/cancel", {"status": ["pending", "completed"]}, ["body", "status", 1]),
        ("/runs/cancel", {"status": []}, ["body", "status"]),
        ("/runs/cancel", {"run_type": "cron"}, ["body", "run_type"]),
        ("/runs/cancel", {"created_before": "2026-01-01T00:00:00"}, ["body", "created_before"]),
        ("/runs/cancel", {"surprise": 1}, ["body", "surprise"]),
        ("/runs/retry", {}, ["body", "status"]),
        ("/runs/retry", {"stream_id": "00000000-0000-0000-0000-000000000001"}, ["body", "status"]),
        ("/runs/retry", {"status": "completed"}, ["body", "status"]),
        ("/runs/retry", {"status": ["failed"]}, ["body", "status"]),
        ("/runs/retry", {"status": "failed", "stream_id": None}, ["body", "stream_id"]),
        ("/runs/retry", {"status": "failed", "completed_after": None}, ["body", "completed_after"]),
    ],
)
def test_bad_bulk_requests_are_422_and_touch_nothing(
    path: str,
    body: dict[str, Any],
    location: list[Any],
    api: TestClient,
    auth: dict[str, str],
    make_stream: Any,
    isolated_queues: str,
) -> None:
    stream = UUID(make_stream()["id"])
    waiting = unpublished_run(stream)
    failed = ended_runs(stream, 1)

    response = api.post(path, json=body, headers=auth)

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == location
    assert run_row(waiting).status == "pending" and retries_of(failed) == []


def test_concurrent_bulk_retries_never_retry_a_run_twice(
    make_stream: Any, workspace_id: UUID, isolated_queues: str
) -> None:
    selection = bulk.Selection(statuses=(RunStatus.FAILED,))
    # Failed runs retried before: each call scans past them, as in a workspace with history.
    ended_runs(UUID(make_stream()["id"]), 3000)
    while bulk.retry(workspace_id, selection).more:
        pass
    twice: list[int] = []
    for _ in range(5):
        originals = ended_runs(UUID(make_stream()["id"]), 300)
        stop = time.monotonic() + 0.3

        def press(stop: float = stop) -> None:  # three callers pressing again and again
            while time.monotonic() < stop:
                bulk.retry(workspace_id, selection)

        callers = [threading.Thread(target=press) for _ in range(3)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(60)
        retried = [retry.retry_of for retry in retries_of(originals)]
        assert set(retried) == set(originals)
        twice.append(len(retried) - len(set(retried)))
    assert twice == [0] * 5, f"runs retried twice, per round: {twice}"
