"""A run through the real API, Postgres, Redis and a real Celery worker."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.fixtures.services import wait_for_status


def test_manual_run_completes_with_result_and_timestamps(
    api: TestClient, auth: dict[str, str], make_stream: Any, worker: Any
) -> None:
    stream = make_stream("builtin.sleep", params={"seconds": 0.2})
    response = api.post("/runs", json={"stream_id": stream["id"]}, headers=auth)
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["status"] == "pending"
    assert run["params"] == {"seconds": 0.2}

    row = wait_for_status(run["id"], "completed")
    assert row.result == {"slept_seconds": 0.2}
    assert row.attempt == 1
    assert row.progress == {"percent": 100.0, "message": "slept 0.2s"}
    assert row.created_at <= row.started_at <= row.completed_at
    shown = api.get(f"/runs/{run['id']}", headers=auth).json()
    assert shown["status"] == "completed"
    assert shown["result"] == {"slept_seconds": 0.2}


def test_flaky_pipeline_completes_on_second_attempt(
    api: TestClient, auth: dict[str, str], make_stream: Any, worker: Any
) -> None:
    stream = make_stream("builtin.flaky", params={"fail_times": 1})
    run = api.post("/runs", json={"stream_id": stream["id"]}, headers=auth).json()

    row = wait_for_status(run["id"], "completed")
    assert row.attempt == 2
    assert row.result == {"succeeded_on_attempt": 2}


def test_failing_attempt_is_recorded_as_retrying_before_the_next(
    api: TestClient, auth: dict[str, str], make_stream: Any, worker: Any
) -> None:
    stream = make_stream("builtin.flaky", params={"fail_times": 1})
    run = api.post("/runs", json={"stream_id": stream["id"]}, headers=auth).json()

    row = wait_for_status(run["id"], "retrying")
    assert row.attempt == 1
    assert row.error_type == "RuntimeError"
    assert "attempt 1 fails" in row.error
    assert row.next_attempt_at is not None


def test_permanent_error_fails_on_first_attempt(
    api: TestClient, auth: dict[str, str], make_stream: Any, worker: Any
) -> None:
    stream = make_stream("builtin.fail", params={"message": "no such feed"})
    run = api.post("/runs", json={"stream_id": stream["id"]}, headers=auth).json()

    row = wait_for_status(run["id"], "failed")
    assert row.attempt == 1
    assert row.error == "no such feed"
    assert row.error_type == "PermanentError"
    assert row.completed_at is not None
    assert row.result is None


def test_retryable_errors_fail_once_attempts_are_used_up(
    api: TestClient, auth: dict[str, str], make_stream: Any, worker: Any
) -> None:
    stream = make_stream("builtin.flaky", params={"fail_times": 10})
    run = api.post("/runs", json={"stream_id": stream["id"]}, headers=auth).json()

    row = wait_for_status(run["id"], "failed", timeout=20)
    assert row.attempt == row.max_attempts == 3
    assert "attempt 3 fails" in row.error


def test_result_that_is_not_json_fails_the_run(
    api: TestClient, auth: dict[str, str], make_stream: Any, worker: Any
) -> None:
    stream = make_stream("test.unserialisable")
    run = api.post("/runs", json={"stream_id": stream["id"]}, headers=auth).json()

    row = wait_for_status(run["id"], "failed")
    assert row.attempt == 1
    assert "not JSON" in row.error


def test_run_params_overlay_stream_params(
    api: TestClient, auth: dict[str, str], make_stream: Any, worker: Any
) -> None:
    stream = make_stream("demo.report", params={"query": "vaccines", "step_seconds": 0})
    body = {"stream_id": stream["id"], "params": {"max_articles": 2}}
    run = api.post("/runs", json=body, headers=auth).json()
    assert run["params"] == {"query": "vaccines", "step_seconds": 0, "max_articles": 2}

    row = wait_for_status(run["id"], "completed")
    assert row.result["query"] == "vaccines"
    assert len(row.result["articles"]) == 2
    assert row.result["report"].startswith("# Research digest: vaccines")
    assert row.progress["percent"] == 95


def test_result_postgres_cannot_store_fails_the_run_once(
    api: TestClient, auth: dict[str, str], make_stream: Any, worker: Any
) -> None:
    stream = make_stream("test.nan")
    run = api.post("/runs", json={"stream_id": stream["id"]}, headers=auth).json()
    row = wait_for_status(run["id"], "failed")
    assert (row.attempt, row.error_type) == (1, "PermanentError")
    assert "NaN" in row.error or "Out of range float values" in row.error
