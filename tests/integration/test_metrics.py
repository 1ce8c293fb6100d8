"""/metrics passes promtool, its counters only rise, and the tallies behind it and /status
match the rows; /workers answers fast, from a cache, and cleanly without a broker."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from celery import Celery
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from app import app as celery_app
from app import db, housekeeping, monitoring, workspaces
from app.errors import BrokerUnavailable
from app.models import pipeline_executions as runs
from app.monitoring.workers import CACHE_SECONDS, clear_cache, inspect_workers
from app.runs import dispatch, service, store
from app.states import RunStatus
from tests.fixtures.queries import set_run
from tests.fixtures.redis_server import free_port
from tests.fixtures.services import unpublished_run, wait_for, wait_for_status
from tests.fixtures.tools import ensure_tool

Scrape = dict[str, list[Sample]]


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus' `promtool` (Debian's `prometheus` package ships it)."""
    return ensure_tool("promtool", "prometheus")


def _scrape(api: TestClient, auth: dict[str, str], promtool: str) -> Scrape:
    response = api.get("/metrics", headers=auth)
    assert response.status_code == 200, response.text
    check = subprocess.run(
        [promtool, "check", "metrics"],
        input=response.text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (check.returncode, check.stdout + check.stderr) == (0, ""), response.text
    families = list(text_string_to_metric_families(response.text))
    types = {family.name: family.type for family in families}
    assert types["runway_runs"] == types["runway_queue_depth"] == "gauge"
    assert types["runway_run_duration_seconds"] == "histogram"
    assert types["runway_schedule_lag_seconds"] == "histogram"
    for counter in ("runway_retries", "runway_rescues", "runway_republishes"):
        assert types[counter] == "counter"
    return {family.name: family.samples for family in families}


def _value(scrape: Scrape, family: str, sample: str, **labels: str) -> float:
    found = [s.value for s in scrape[family] if s.name == sample and s.labels == labels]
    assert len(found) == 1, (sample, labels, scrape[family])
    return found[0]


def _check_histogram(scrape: Scrape, family: str) -> float:
    """Buckets are cumulative and end at +Inf == _count; returns the count."""
    buckets = [s for s in scrape[family] if s.name.endswith("_bucket")]
    edges = [float(s.labels["le"]) for s in buckets]
    values = [s.value for s in buckets]
    assert edges == sorted(edges) and edges[-1] == float("inf")
    assert values == sorted(values)
    count = _value(scrape, family, f"{family}_count")
    assert values[-1] == count
    return count


def _finish_some(api: TestClient, auth: dict[str, str], make_stream: Any) -> None:
    """A completed run, a run that fails once then completes, a failed one, a scheduled one
    started 2 s after its slot, a rescued one and a re-published one."""
    ids = [
        api.post("/runs", json={"stream_id": make_stream(pipeline)["id"]}, headers=auth).json()[
            "id"
        ]
        for pipeline in ("builtin.noop", "builtin.flaky", "builtin.fail")
    ]
    noop = make_stream()["id"]
    slot = datetime.now(UTC) - timedelta(seconds=2)
    scheduled = unpublished_run(noop, run_type="scheduled", scheduled_for=slot)
    dispatch.publish(scheduled)
    lost = unpublished_run(noop)
    set_run(lost, updated_at=datetime.now(UTC) - timedelta(minutes=5))
    rescued = unpublished_run(noop)
    old = datetime.now(UTC) - timedelta(minutes=5)
    set_run(rescued, status="running", attempt=1, worker="gone@nowhere", heartbeat_at=old)
    assert housekeeping.rescue() >= 1 and housekeeping.republish() >= 1
    for run_id in (*ids, scheduled, lost, rescued):
        wait_for_status(run_id, "completed", "failed", timeout=20)


def test_metrics_pass_promtool_and_only_rise(
    api: TestClient, auth: dict[str, str], make_stream: Any, worker: Any, promtool: str
) -> None:
    _finish_some(api, auth, make_stream)
    first = _scrape(api, auth, promtool)
    assert _value(first, "runway_runs", "runway_runs", status="completed") == 5
    assert _value(first, "runway_runs", "runway_runs", status="failed") == 1
    assert _value(first, "runway_retries", "runway_retries_total") == 2  # flaky, rescued
    assert _value(first, "runway_rescues", "runway_rescues_total") == 1
    ended = "runway_runs_ended", "runway_runs_ended_total"
    assert _value(first, *ended, status="completed") == 5
    assert _value(first, *ended, status="failed") == 1
    assert _value(first, "runway_republishes", "runway_republishes_total") >= 1
    assert _check_histogram(first, "runway_run_duration_seconds") == 5
    assert _check_histogram(first, "runway_schedule_lag_seconds") == 1
    lag = _value(first, "runway_schedule_lag_seconds", "runway_schedule_lag_seconds_sum")
    assert 2 <= lag < 15

    _finish_some(api, auth, make_stream)
    with db.unit_of_work() as conn:  # deleting runs lowers the gauge, never a counter
        conn.execute(sa.delete(runs).where(runs.c.status == RunStatus.FAILED))
    second = _scrape(api, auth, promtool)
    assert _value(second, "runway_runs", "runway_runs", status="failed") == 0
    assert _value(second, *ended, status="failed") == 2
    for family in ("runway_retries", "runway_rescues", "runway_republishes"):
        sample = f"{family}_total"
        assert _value(second, family, sample) > _value(first, family, sample)
    for family in ("runway_run_duration_seconds", "runway_schedule_lag_seconds"):
        assert _check_histogram(second, family) == 2 * _check_histogram(first, family)
    other = workspaces.create_key("globex")[1]
    elsewhere = _scrape(api, {"Authorization": f"Bearer {other}"}, promtool)
    assert _value(elsewhere, "runway_runs", "runway_runs", status="completed") == 0


def _rows_by_status(workspace_id: UUID) -> dict[str, int]:
    with db.unit_of_work() as conn:
        found = store.counts_by_status(conn, workspace_id)
    return {state.value: found.get(state.value, 0) for state in RunStatus}


def test_status_tallies_match_the_rows_through_bulk_changes(
    make_stream: Any, workspace_id: UUID
) -> None:
    stream = UUID(make_stream()["id"])
    statuses = "ARRAY['pending','running','retrying','completed','failed','cancelled']"
    with db.unit_of_work() as conn:  # 3,000 rows in one statement, in every status
        conn.execute(
            sa.text(f"""
            INSERT INTO pipeline_executions (workspace_id, stream_id, run_type, pipeline,
                max_attempts, attempt, status, started_at, completed_at)
            SELECT :ws, :stream, 'manual', 'builtin.noop', 3, 1, ({statuses})[1 + g % 6],
                   now() - interval '1 hour', now() - make_interval(secs => g)
              FROM generate_series(1, 3000) g"""),
            {"ws": workspace_id, "stream": stream},
        )
        conn.execute(  # one bulk transition, then a bulk delete
            sa.update(runs)
            .where(runs.c.status == RunStatus.PENDING)
            .values(status=RunStatus.CANCELLED)
        )
        conn.execute(
            sa.delete(runs).where(runs.c.completed_at < sa.text("now() - interval '40 min'"))
        )
    found = monitoring.status(workspace_id)
    assert found.counts == _rows_by_status(workspace_id)
    assert sum(found.counts.values()) == 2400  # those that ended over 2,400 s ago went
    with db.unit_of_work() as conn:
        expected = store.recent_failures(conn, workspace_id, 10)
    assert [row.id for row in found.recent_failures] == [row.id for row in expected]
    assert len(found.recent_failures) == 10


def test_deleting_a_workspace_takes_its_runs_and_tallies(
    make_stream: Any, workspace_id: UUID
) -> None:
    unpublished_run(UUID(make_stream()["id"]))
    assert monitoring.status(workspace_id).counts["pending"] == 1
    with db.unit_of_work() as conn:
        conn.execute(sa.text("DELETE FROM workspaces WHERE id = :id"), {"id": workspace_id})
        left = conn.execute(sa.text("SELECT count(*) FROM run_tallies")).scalar()
    assert left == 0


def test_workers_one_broadcast_cached_and_shared(
    isolated_queues: str, make_stream: Any, spawn: Any, workspace_id: UUID
) -> None:
    worker = spawn("worker", "-c", "1")  # prefork, as deployed: rows name the node
    stream = make_stream("builtin.sleep", params={"seconds": 30})["id"]
    run_id = unpublished_run(UUID(stream))
    dispatch.publish(run_id)
    assert wait_for_status(run_id, "running", timeout=20).worker == worker.node
    begun = time.monotonic()
    found = {info.name: info for info in inspect_workers(celery_app)}
    assert time.monotonic() - begun < 1.5
    assert (found[worker.node].active, found[worker.node].processed) == (1, 1)

    clear_cache()
    answers: list[float] = []

    def ask() -> None:
        begun = time.monotonic()
        monitoring.workers()
        answers.append(time.monotonic() - begun)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 8 and max(answers) < 1.5  # one broadcast served all eight
    cached = monitoring.workers()
    assert monitoring.workers() is cached
    wait_for(lambda: monitoring.workers() is not cached, CACHE_SECONDS + 3, "a fresh broadcast")
    service.cancel(workspace_id, run_id)
    wait_for_status(run_id, "cancelled")


def test_workers_without_a_broker_raise_broker_unavailable() -> None:
    nowhere = Celery(broker=f"redis://127.0.0.1:{free_port()}/0")
    begun = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        inspect_workers(nowhere)
    assert time.monotonic() - begun < 1.5


def test_workers_answer_503_quickly_when_the_broker_hangs(
    api: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker that accepts connections and never answers: every caller, even six at once,
    has its 503 within 1.5 s, and the answer is cached rather than tried again in turn."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(
        target=lambda: accepted.extend(listener.accept()[0] for _ in range(50)), daemon=True
    ).start()
    port = listener.getsockname()[1]
    monkeypatch.setattr(celery_app.conf, "broker_url", f"redis://127.0.0.1:{port}/0")
    clear_cache()

    def call() -> tuple[int, float]:
        begun = time.monotonic()
        status = api.get("/workers", headers=auth).status_code
        return status, time.monotonic() - begun

    try:
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: call(), range(6)))
    finally:
        clear_cache()
        listener.close()
    assert {status for status, _ in answers} == {503}, answers
    assert max(seconds for _, seconds in answers) < 1.5, answers


def test_limit_keys_running_and_waiting_gauges(
    api: TestClient, auth: dict[str, str], make_stream: Any, promtool: str
) -> None:
    stream = UUID(make_stream()["id"])
    for key in ("openai", "idle"):
        assert api.put(f"/limits/{key}", json={"max_concurrent": 1}, headers=auth).is_success
    gated = {"limit_keys": ["openai", "nolimit"], "gated": True}
    unpublished_run(stream, status="running", attempt=1, **gated)
    waiting = {"kind": "concurrency", "key": "openai", "until": None}
    unpublished_run(stream, waiting_for=waiting, **gated)
    unpublished_run(stream, waiting_for=waiting, **gated)

    scrape = _scrape(api, auth, promtool)
    running, waits = "runway_limit_running", "runway_limit_waiting"
    assert _value(scrape, running, running, key="openai") == 1
    assert _value(scrape, waits, waits, key="openai") == 2
    assert _value(scrape, running, running, key="idle") == 0
    assert _value(scrape, waits, waits, key="idle") == 0
    assert {s.labels["key"] for s in scrape[running]} == {"openai", "idle"}  # rows only
    other = workspaces.create_key("globex")[1]
    elsewhere = _scrape(api, {"Authorization": f"Bearer {other}"}, promtool)
    assert elsewhere.get(running, []) == [] and elsewhere.get(waits, []) == []
