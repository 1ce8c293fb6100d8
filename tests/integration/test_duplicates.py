"""A run delivered more than once still runs its pipeline once: the claim decides."""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

import redis
from celery import signals
from fastapi.testclient import TestClient

from app import db
from app.runs import dispatch, store
from tests.fixtures.services import unpublished_run, wait_for, wait_for_status
from tests.pipelines import executions_key


def test_same_run_published_twice_runs_its_pipeline_once(
    api: TestClient,
    auth: dict[str, str],
    make_stream: Any,
    worker: Any,
    redis_client: redis.Redis,
) -> None:
    deliveries: list[Any] = []

    def record(task_id: str, retval: Any, **_: Any) -> None:
        deliveries.append((task_id, retval))

    signals.task_postrun.connect(record, weak=False)
    try:
        stream = make_stream("test.count", params={"seconds": 0.5})
        run = api.post("/runs", json={"stream_id": stream["id"]}, headers=auth).json()
        assert dispatch.publish(UUID(run["id"]))  # the duplicate

        wait_for(
            lambda: sum(1 for task, _ in deliveries if task == run["id"]) == 2,
            what="both deliveries to be handled",
        )
    finally:
        signals.task_postrun.disconnect(record)

    outcomes = sorted(str(value) for task, value in deliveries if task == run["id"])
    assert outcomes == ["None", "completed"]
    assert int(redis_client.get(executions_key(run["id"])) or 0) == 1
    row = wait_for_status(run["id"], "completed")
    assert row.attempt == 1


def test_concurrent_claims_of_one_run_have_one_winner(make_stream: Any) -> None:
    run_id = unpublished_run(UUID(make_stream("builtin.noop")["id"]))
    start = threading.Barrier(8)
    won: list[bool] = []

    def claim() -> None:
        start.wait()
        with db.hot_connection() as conn:
            won.append(store.claim(conn, run_id, "w").claimed is not None)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won) == [False] * 7 + [True]
