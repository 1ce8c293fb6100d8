"""`celery -A app worker` as a real prefork process: the way Runway is deployed."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from app.runs import dispatch
from app.runs.job import Job
from app.settings import get_settings
from tests.fixtures.processes import BIN
from tests.fixtures.services import unpublished_run, wait_for, wait_for_status


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


def _inspect(command: str, node: str) -> list[dict[str, Any]]:
    """`celery -A app inspect <command>` as an operator runs it: what `node` reports."""
    done = subprocess.run(
        [str(BIN / "celery"), "-A", "app", "inspect", command, "-d", node, "-j", "-t", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found: list[dict[str, Any]] = json.loads(done.stdout)[node]
    return found


def test_runs_published_in_batches_are_tasks_a_worker_runs_and_inspect_shows(
    isolated_queues: str, make_stream: Any, spawn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs go out as Celery's own messages, a pipeline of them per round trip: a prefork
    worker runs them and `celery inspect` reports them like any task, countdown included."""
    monkeypatch.setattr(dispatch, "BATCH", 2)  # 5 runs: three round trips
    worker = spawn("worker", "--pool", "prefork", "-c", "2")
    stream = make_stream("builtin.sleep", params={"seconds": 3})
    running = [unpublished_run(stream["id"]) for _ in range(2)]
    queued = [unpublished_run(stream["id"]) for _ in range(2)]
    later = unpublished_run(stream["id"])

    assert dispatch.publish(later, countdown=60)  # first, so the worker holds it at once
    assert dispatch.publish_many([*running, *queued]) == 4

    def active() -> list[dict[str, Any]]:
        tasks = _inspect("active", worker.node)
        return tasks if len(tasks) == 2 else []

    tasks = wait_for(active, 30, "two runs active on the worker")
    assert {(task["name"], task["args"][0]) for task in tasks} == {
        (dispatch.EXECUTE_TASK, str(run_id)) for run_id in running
    }
    assert {task["id"] for task in tasks} == {str(run_id) for run_id in running}
    [scheduled] = wait_for(lambda: _inspect("scheduled", worker.node), 10, "the countdown run")
    assert scheduled["request"]["id"] == str(later)
    assert scheduled["request"]["name"] == dispatch.EXECUTE_TASK
    assert scheduled["eta"] is not None

    for run_id in [*running, *queued]:
        row = wait_for_status(run_id, "completed", timeout=30)
        assert row.worker.startswith(worker.name)
        assert row.result == {"slept_seconds": 3}


def _publish_async(jobs: list[Job]) -> int:
    """Publish as the API does, on an event loop of its own (in a thread: the test's may
    have one running already)."""

    async def publish() -> int:
        await dispatch.open_async()
        try:
            return await dispatch.publish_async(jobs)
        finally:
            await dispatch.close_async()

    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, publish()).result(timeout=30)


def _popped(client: redis.Redis, priority: str) -> tuple[str, dict[str, Any]]:
    """The one message in the runs queue, and the list it was in, with its own ids taken out
    (`reply_to` is the publishing thread's id)."""
    for name in dispatch.queue_lists(get_settings().runs_queue):
        raw = client.rpop(name)
        if raw is not None:
            message = json.loads(raw)
            args, kwargs, embed = json.loads(base64.b64decode(message.pop("body")))
            for key in ("id", "root_id", "argsrepr"):
                message["headers"].pop(key)
            for key in ("correlation_id", "delivery_tag", "reply_to"):
                assert isinstance(message["properties"].pop(key), str)
            message["decoded body"] = [len(args), kwargs, embed]
            return name, message
    raise AssertionError(f"no {priority} message in the queue")


def test_runs_published_from_the_event_loop_are_the_messages_kombu_sends(
    isolated_queues: str, make_stream: Any, spawn: Any
) -> None:
    """The API publishes without kombu's (synchronous) producer: each message, byte for byte
    but for its ids, is the one kombu's Redis transport stores, in the same priority list;
    and a worker runs it."""
    client = redis.Redis.from_url(get_settings().redis_url)
    stream = make_stream("builtin.noop")
    for priority, gated in (("high", False), ("normal", True), ("low", False)):
        ours = Job(unpublished_run(stream["id"]), priority, gated)
        kombus = Job(unpublished_run(stream["id"]), priority, gated)
        assert _publish_async([ours]) == 1
        found = _popped(client, priority)
        assert dispatch.publish_many([kombus]) == 1
        assert found == _popped(client, priority)

    spawn("worker", "--pool", "prefork", "-c", "2")
    run_ids = [unpublished_run(stream["id"]) for _ in range(3)]
    assert _publish_async([Job(run_id) for run_id in run_ids]) == 3
    for run_id in run_ids:
        wait_for_status(run_id, "completed", timeout=30)


def test_worker_refuses_to_start_without_its_pipelines(spawn: Any) -> None:
    worker = spawn("worker", env={"RUNWAY_PIPELINES": "acme.missing"}, ready=False)
    assert worker.wait(60) == 1
    assert "cannot import 'acme.missing'" in worker.log()
