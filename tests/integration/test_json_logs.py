"""With RUNWAY_LOG_FORMAT=json, every line that api, worker and beat write is one JSON object,
Celery's and uvicorn's own lines included, from start-up to shutdown; lifecycle lines carry the
run's fields; and no password or API key ever appears."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.runs import dispatch
from tests.fixtures.processes import Process
from tests.fixtures.redis_server import free_port
from tests.fixtures.secrets import DATABASE_PASSWORD, REDIS_PASSWORD
from tests.fixtures.services import unpublished_run, wait_for, wait_for_status

pytestmark = pytest.mark.slow
LIFECYCLE_FIELDS = {"execution_id", "stream_id", "run_type", "attempt", "status", "duration"}


@pytest.fixture
def secret_env(secret_urls: dict[str, str]) -> dict[str, str]:
    """The processes' environment: JSON logs, and URLs that carry passwords."""
    return {"RUNWAY_LOG_FORMAT": "json", **secret_urls}


def _lines(process: Process) -> list[dict[str, Any]]:
    """Every line the process wrote (stdout and stderr), each parsed as a JSON object."""
    text = process.log()
    assert text, f"{process.name} wrote nothing"
    parsed = []
    for number, line in enumerate(text.split("\n")[:-1], 1):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"{process.name} line {number} is not JSON: {line!r}")
        assert isinstance(value, dict), f"{process.name} line {number}: {line!r}"
        parsed.append(value)
    assert text.endswith("\n"), f"{process.name}: unterminated last line {text[-200:]!r}"
    return parsed


def _start_all(spawn: Callable[..., Process], env: dict[str, str], port: int) -> list[Process]:
    worker = spawn("worker", "--pool", "prefork", "-c", "1", env=env)
    beat = spawn("beat", env=env)
    api = spawn("api", "--host", "127.0.0.1", "--port", str(port), env=env)
    wait_for(lambda: _answers(port) or not api.alive(), 30, "the API to answer")
    assert api.alive(), api.log()[-3000:]
    return [worker, beat, api]


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def test_every_line_is_json_with_lifecycle_fields_and_no_secret(
    isolated_queues: str,
    make_stream: Any,
    api_key: str,
    spawn: Callable[..., Process],
    secret_env: dict[str, str],
) -> None:
    port = free_port()
    worker, beat, api = _start_all(spawn, secret_env, port)
    good = unpublished_run(make_stream("builtin.noop")["id"])
    bad = unpublished_run(
        make_stream("test.flaky", params={"seconds": 0, "fail_times": 9})["id"], max_attempts=2
    )
    dispatch.publish_many([good, bad])
    wait_for_status(good, "completed", timeout=30)
    wait_for_status(bad, "failed", timeout=30)
    auth = {"Authorization": f"Bearer {api_key}"}
    assert httpx.get(f"http://127.0.0.1:{port}/runs/{good}", headers=auth).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{port}/runs/{good}").status_code == 401
    wait_for(lambda: "Starting" in beat.log(), 15, "beat to start")
    for process in (worker, beat, api):
        process.stop()

    logged = {process.name: (process, _lines(process)) for process in (worker, beat, api)}
    for process, lines in logged.values():
        text = process.log()
        for secret in (DATABASE_PASSWORD, REDIS_PASSWORD, api_key):
            assert secret not in text, f"{process.name} logged a secret"
        assert any("start" in str(line.get("message")).lower() for line in lines), process.name
    _assert_lifecycle(logged[worker.name][1], good, bad)
    access = [line for line in logged[api.name][1] if line.get("name") == "uvicorn.access"]
    assert any(f"/runs/{good}" in line["message"] for line in access), access


def _assert_lifecycle(lines: list[dict[str, Any]], good: uuid.UUID, bad: uuid.UUID) -> None:
    lifecycle = [line for line in lines if set(line) >= LIFECYCLE_FIELDS]
    seen = {(line["execution_id"], line["status"]) for line in lifecycle}
    assert {(str(good), "running"), (str(good), "completed")} <= seen, seen
    assert {(str(bad), "retrying"), (str(bad), "failed")} <= seen, seen
    for line in lifecycle:
        assert line["run_type"] == "manual" and line["stream_id"], line
    ended = [line for line in lifecycle if line["status"] in ("completed", "failed")]
    assert all(isinstance(line["duration"], float | int) for line in ended), ended
    attempts = {line["attempt"] for line in lifecycle if line["execution_id"] == str(bad)}
    assert attempts == {1, 2}
