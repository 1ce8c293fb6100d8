"""/status, /workers, /metrics and /runs/cleanup."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from fastapi.testclient import TestClient

from app import db, workspaces
from app.models import pipeline_executions
from app.monitoring import flow
from tests.fixtures.services import unpublished_run, wait_for_status


def test_status_counts_this_workspaces_runs(
    api: TestClient, auth: dict[str, str], make_stream: Any, worker: Any
) -> None:
    failing = make_stream("builtin.fail")
    failed = api.post("/runs", json={"stream_id": failing["id"]}, headers=auth).json()
    wait_for_status(failed["id"], "failed")
    unpublished_run(make_stream()["id"])  # one pending run
    other = workspaces.create_key("globex")[1]

    status = api.get("/status", headers=auth).json()
    assert (status["failed_count"], status["pending_count"], status["total_count"]) == (1, 1, 2)
    assert status["is_processing"] is True
    assert [run["id"] for run in status["recent_failures"]] == [failed["id"]]
    assert (
        api.get("/status", headers={"Authorization": f"Bearer {other}"}).json()["total_count"] == 0
    )


def test_workers_lists_live_workers(api: TestClient, auth: dict[str, str], spawn: Any) -> None:
    worker = spawn("worker", "-c", "1")
    found = api.get("/workers", headers=auth).json()
    names = [entry["name"] for entry in found["workers"]]
    assert worker.name in " ".join(names)
    assert found["online_count"] == len(names) >= 1


def test_metrics_in_prometheus_text(
    api: TestClient, auth: dict[str, str], make_stream: Any, worker: Any
) -> None:
    run = api.post("/runs", json={"stream_id": make_stream()["id"]}, headers=auth).json()
    wait_for_status(run["id"], "completed")
    response = api.get("/metrics", headers=auth)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'runway_runs{status="completed"} 1.0' in text
    assert "runway_queue_depth{" in text
    assert "runway_run_duration_seconds_count 1.0" in text
    assert 'runway_run_duration_seconds_bucket{le="+Inf"} 1.0' in text
    assert api.get("/metrics").status_code == 401


def test_cleanup_deletes_old_ended_runs_only(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream()
    old, recent, waiting = (unpublished_run(stream["id"]) for _ in range(3))
    with db.unit_of_work() as conn:
        for run_id, age in ((old, "40 days"), (recent, "1 day")):
            conn.execute(
                sa.update(pipeline_executions)
                .where(pipeline_executions.c.id == run_id)
                .values(status="failed", completed_at=sa.text(f"now() - interval '{age}'"))
            )

    response = api.post(
        "/runs/cleanup", json={"status": "failed", "older_than_days": 30}, headers=auth
    )
    assert response.json() == {"deleted": 1}
    assert api.get(f"/runs/{old}", headers=auth).status_code == 404
    assert api.get(f"/runs/{recent}", headers=auth).status_code == 200
    assert api.get(f"/runs/{waiting}", headers=auth).status_code == 200

    for body, field in [
        ({"status": "pending", "older_than_days": 1}, "status"),
        ({"status": "failed", "older_than_days": -1}, "older_than_days"),
    ]:
        bad = api.post("/runs/cleanup", json=body, headers=auth)
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", field]


def test_status_counts_runs_held_by_flow_control_as_waiting(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream()["id"]
    held = {"waiting_for": {"kind": "concurrency", "key": "openai", "until": None}}
    unpublished_run(stream)  # pending, may start
    unpublished_run(stream, **held)
    unpublished_run(stream, status="retrying", attempt=1, **held)
    unpublished_run(stream, status="retrying", attempt=1)
    status = api.get("/status", headers=auth).json()
    counted = (status["pending_count"], status["retrying_count"], status["waiting_count"])
    assert counted == (1, 1, 2)
    assert status["total_count"] == 4 and status["is_processing"] is True
    other = {"Authorization": f"Bearer {workspaces.create_key('globex')[1]}"}
    assert api.get("/status", headers=other).json()["waiting_count"] == 0


def test_waiting_count_reads_the_waiting_index(workspace_id: UUID) -> None:
    with db.unit_of_work() as conn:
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = conn.execute(sa.text(f"EXPLAIN {flow.WAITING.text}"), {"ws": workspace_id}).scalars()
        assert "ix_pipeline_executions_waiting" in "\n".join(plan)
