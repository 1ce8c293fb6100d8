"""`celery -A app worker` as a real prefork process: the way Runway is deployed."""

from __future__ import annotations

from typing import Any

from app.runs import dispatch
from tests.fixtures.services import unpublished_run, wait_for_status


def test_prefork_worker_process_runs_runs(
    isolated_queues: str, make_stream: Any, spawn: Any
) -> None:
    worker = spawn("worker", "--pool", "prefork", "-c", "2")
    stream = make_stream("builtin.sleep", params={"seconds": 0.3})
    run_ids = [unpublished_run(stream["id"]) for _ in range(4)]
    assert dispatch.publish_many(run_ids) == 4

    for run_id in run_ids:
        row = wait_for_status(run_id, "completed", timeout=30)
        assert row.worker.startswith(worker.name)
        assert row.result == {"slept_seconds": 0.3}
        assert row.progress == {"percent": 100.0, "message": "slept 0.3s"}


def test_worker_refuses_to_start_without_its_pipelines(spawn: Any) -> None:
    worker = spawn("worker", env={"RUNWAY_PIPELINES": "acme.missing"}, ready=False)
    assert worker.wait(60) == 1
    assert "cannot import 'acme.missing'" in worker.log()
