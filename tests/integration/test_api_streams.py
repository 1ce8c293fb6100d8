"""The /streams endpoints: validation, schedules shown and changed, deletion."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.main import CONCURRENT_REQUESTS
from app import db
from app.errors import InvalidInput
from app.streams import service as streams
from tests.fixtures.services import run_row, unpublished_run, wait_for


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_create_stream_with_cron_shows_next_run_and_upcoming(
    api: TestClient, auth: dict[str, str]
) -> None:
    body = {
        "name": "weekly digest",
        "pipeline": "demo.report",
        "params": {"query": "crispr"},
        "schedule_config": {"cron": "0 6 * * 1", "timezone": "Europe/Berlin"},
    }
    created = api.post("/streams", json=body, headers=auth)
    assert created.status_code == 201, created.text
    stream = created.json()
    assert stream["schedule_config"] == {
        "enabled": True,
        "cron": "0 6 * * 1",
        "interval_seconds": None,
        "timezone": "Europe/Berlin",
        "overlap": "skip",
        "misfire": "run_once",
        "pause_after_failures": None,
        "late_after_seconds": None,
    }
    upcoming = [_time(value) for value in stream["upcoming"]]
    assert len(upcoming) == 5
    assert upcoming[0] == _time(stream["next_scheduled_run"])
    for when in upcoming:
        local = when.astimezone(ZoneInfo("Europe/Berlin"))
        assert (local.weekday(), local.hour, local.minute) == (0, 6, 0)
    assert all(b - a == timedelta(days=7) for a, b in itertools.pairwise(upcoming))
    assert (
        api.get(f"/streams/{stream['id']}", headers=auth).json()["upcoming"] == stream["upcoming"]
    )


def test_interval_stream_upcoming_is_evenly_spaced(api: TestClient, auth: dict[str, str]) -> None:
    body = {"name": "s", "pipeline": "builtin.noop", "schedule_config": {"interval_seconds": 90}}
    stream = api.post("/streams", json=body, headers=auth).json()
    upcoming = [_time(value) for value in stream["upcoming"]]
    assert [b - a for a, b in itertools.pairwise(upcoming)] == [timedelta(seconds=90)] * 4


def test_bad_streams_get_422_naming_the_field(api: TestClient, auth: dict[str, str]) -> None:
    base = {"name": "s", "pipeline": "builtin.noop"}
    cases = [
        ({**base, "pipeline": "acme.nope"}, ["body", "pipeline"], "unknown pipeline"),
        (
            {**base, "schedule_config": {"cron": "0 25 * * *"}},
            ["body", "schedule_config", "cron"],
            "0-23",
        ),
        (
            {**base, "schedule_config": {"cron": "* * *"}},
            ["body", "schedule_config", "cron"],
            "5 fields",
        ),
        (
            {**base, "schedule_config": {"cron": "0 6 * * *", "timezone": "Mars/Olympus"}},
            ["body", "schedule_config", "timezone"],
            "Mars/Olympus",
        ),
        (
            {**base, "schedule_config": {"cron": "0 6 * * *", "interval_seconds": 60}},
            ["body", "schedule_config"],
            "exactly one",
        ),
        ({**base, "schedule_config": {}}, ["body", "schedule_config"], "exactly one"),
        (
            {**base, "schedule_config": {"interval_seconds": 0}},
            ["body", "schedule_config", "interval_seconds"],
            "",
        ),
        (
            {**base, "schedule_config": {"interval_seconds": 60, "overlap": "maybe"}},
            ["body", "schedule_config", "overlap"],
            "",
        ),
        ({**base, "name": ""}, ["body", "name"], ""),
    ]
    for body, location, words in cases:
        response = api.post("/streams", json=body, headers=auth)
        assert response.status_code == 422, body
        error = response.json()["detail"][0]
        assert error["loc"] == location, (body, error)
        assert words in error["msg"], (body, error)
    assert api.get("/streams", headers=auth).json() == []


def test_patch_changes_schedule_at_once_and_merges(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream(schedule_config={"interval_seconds": 3600})
    first_next = _time(stream["next_scheduled_run"])

    faster = api.patch(
        f"/streams/{stream['id']}", json={"schedule_config": {"interval_seconds": 60}}, headers=auth
    ).json()
    assert _time(faster["next_scheduled_run"]) < first_next - timedelta(minutes=50)
    assert faster["schedule_config"]["overlap"] == "skip"

    paused = api.patch(
        f"/streams/{stream['id']}", json={"schedule_config": {"enabled": False}}, headers=auth
    ).json()
    assert paused["next_scheduled_run"] is None
    assert paused["upcoming"] == []
    assert paused["schedule_config"]["interval_seconds"] == 60

    to_cron = api.patch(
        f"/streams/{stream['id']}",
        json={"schedule_config": {"enabled": True, "cron": "30 * * * *", "interval_seconds": None}},
        headers=auth,
    ).json()
    assert _time(to_cron["next_scheduled_run"]).minute == 30

    bad = api.patch(
        f"/streams/{stream['id']}", json={"schedule_config": {"cron": "nope"}}, headers=auth
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "schedule_config", "cron"]
    unchanged = api.get(f"/streams/{stream['id']}", headers=auth).json()
    assert unchanged["schedule_config"]["cron"] == "30 * * * *"


def test_patch_name_pipeline_and_params(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream()
    changed = api.patch(
        f"/streams/{stream['id']}",
        json={"name": "renamed", "pipeline": "builtin.sleep", "params": {"seconds": 1}},
        headers=auth,
    )
    assert changed.status_code == 200
    assert (changed.json()["name"], changed.json()["pipeline"]) == ("renamed", "builtin.sleep")
    assert changed.json()["params"] == {"seconds": 1}
    bad = api.patch(f"/streams/{stream['id']}", json={"pipeline": "nope"}, headers=auth)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "pipeline"]


def test_delete_stream_keeps_its_runs(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream()
    run_id = unpublished_run(stream["id"])
    assert api.delete(f"/streams/{stream['id']}", headers=auth).status_code == 204
    assert api.get(f"/streams/{stream['id']}", headers=auth).status_code == 404
    assert api.delete(f"/streams/{stream['id']}", headers=auth).status_code == 404
    assert run_row(run_id) is not None
    assert api.get(f"/runs/{run_id}", headers=auth).json()["stream_id"] == stream["id"]


def test_new_stream_has_no_ticks(api: TestClient, auth: dict[str, str], make_stream: Any) -> None:
    stream = make_stream(schedule_config={"interval_seconds": 60})
    response = api.get(f"/streams/{stream['id']}/ticks", headers=auth)
    assert response.status_code == 200
    assert response.json() == []


def test_health_reports_database_and_broker(api: TestClient) -> None:
    response = api.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_health_answers_while_requests_are_stuck_on_postgres(
    api: TestClient, auth: dict[str, str]
) -> None:
    """Every request thread of the process waits on a lock (a migration, say); /health has
    threads of its own and still answers."""
    with db.unit_of_work() as locker:  # rolled back when the test is done with it
        locker.execute(sa.text("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE"))
        stuck = [
            threading.Thread(target=api.get, args=(f"/runs/{uuid4()}",), kwargs={"headers": auth})
            for _ in range(CONCURRENT_REQUESTS)
        ]
        for thread in stuck:
            thread.start()
        wait_for(lambda: _waiting_on_locks() >= CONCURRENT_REQUESTS, 15, "the stuck requests")

        started = time.monotonic()
        response = api.get("/health")
        assert response.status_code == 200
        assert time.monotonic() - started < 2
        locker.rollback()
    for thread in stuck:
        thread.join(15)


def _waiting_on_locks() -> int:
    with db.unit_of_work() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def test_openapi_describes_every_endpoint(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert {
        "/streams",
        "/streams/{stream_id}",
        "/streams/{stream_id}/ticks",
        "/runs",
        "/runs/{run_id}",
        "/runs/{run_id}/retry",
        "/health",
    } <= set(paths)
    assert api.get("/docs").status_code == 200


def test_values_postgres_cannot_store_get_422(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream()
    cases = [
        ("post", "/streams", {"name": "a\u0000b", "pipeline": "builtin.noop"}, ["body", "name"]),
        (
            "post",
            "/streams",
            {"name": "s", "pipeline": "builtin.noop", "params": {"x": "\u0000"}},
            ["body", "params"],
        ),
        ("patch", f"/streams/{stream['id']}", {"name": None}, ["body", "name"]),
        ("patch", f"/streams/{stream['id']}", {"params": None}, ["body", "params"]),
        ("patch", f"/streams/{stream['id']}", {"pipeline": None}, ["body", "pipeline"]),
    ]
    for method, path, body, location in cases:
        response = getattr(api, method)(path, json=body, headers=auth)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"][0]["loc"] == location
    nan = b'{"name": "s", "pipeline": "builtin.noop", "params": {"x": NaN}}'
    response = api.post(
        "/streams", content=nan, headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert api.get("/streams", params={"offset": 10**20}, headers=auth).status_code == 422
    assert api.get(f"/streams/{stream['id']}", headers=auth).json()["name"] == stream["name"]


def test_streamed_oversized_body_is_413(api: TestClient, auth: dict[str, str]) -> None:
    def chunks() -> Any:
        yield b'{"name": "s", "pipeline": "builtin.noop", "params": {"blob": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}}'

    response = api.post(
        "/streams", content=chunks(), headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 413


def test_priority_and_limit_keys_round_trip(api: TestClient, auth: dict[str, str]) -> None:
    plain = api.post("/streams", json={"name": "s", "pipeline": "builtin.noop"}, headers=auth)
    assert (plain.json()["priority"], plain.json()["limit_keys"]) == ("normal", [])
    body = {"name": "s", "pipeline": "builtin.noop", "priority": "high", "limit_keys": ["openai"]}
    created = api.post("/streams", json=body, headers=auth)
    assert created.status_code == 201, created.text
    stream_id = created.json()["id"]
    assert (created.json()["priority"], created.json()["limit_keys"]) == ("high", ["openai"])

    keys = [f"k{index}" for index in range(8)]
    patched = api.patch(f"/streams/{stream_id}", json={"limit_keys": keys}, headers=auth)
    assert (patched.json()["priority"], patched.json()["limit_keys"]) == ("high", keys)
    patched = api.patch(f"/streams/{stream_id}", json={"priority": "low"}, headers=auth)
    assert (patched.json()["priority"], patched.json()["limit_keys"]) == ("low", keys)
    cleared = api.patch(f"/streams/{stream_id}", json={"limit_keys": []}, headers=auth).json()
    assert cleared["limit_keys"] == []
    shown = api.get(f"/streams/{stream_id}", headers=auth).json()
    assert (shown["priority"], shown["limit_keys"]) == ("low", [])
    listed = api.get("/streams", headers=auth).json()
    assert {(item["priority"], tuple(item["limit_keys"])) for item in listed} == {
        ("normal", ()),
        ("low", ()),
    }


def test_bad_priority_and_limit_keys_get_422_naming_the_field(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    base = {"name": "s", "pipeline": "builtin.noop"}
    cases = [
        ({"limit_keys": [f"k{index}" for index in range(9)]}, ["body", "limit_keys"]),
        ({"limit_keys": ["openai", "openai"]}, ["body", "limit_keys"]),
        ({"limit_keys": ["OpenAI"]}, ["body", "limit_keys", 0]),
        ({"limit_keys": ["a" * 65]}, ["body", "limit_keys", 0]),
        ({"limit_keys": [""]}, ["body", "limit_keys", 0]),
        ({"limit_keys": "openai"}, ["body", "limit_keys"]),
        ({"priority": "urgent"}, ["body", "priority"]),
    ]
    stream_id = make_stream()["id"]
    for fields, location in cases:
        created = api.post("/streams", json={**base, **fields}, headers=auth)
        assert created.status_code == 422, fields
        assert created.json()["detail"][0]["loc"] == location, created.text
        patched = api.patch(f"/streams/{stream_id}", json=fields, headers=auth)
        assert patched.status_code == 422, fields
        assert patched.json()["detail"][0]["loc"] == location, patched.text
    for field in ("priority", "limit_keys"):
        patched = api.patch(f"/streams/{stream_id}", json={field: None}, headers=auth)
        assert patched.status_code == 422
        assert patched.json()["detail"][0]["loc"] == ["body", field]
    assert len(api.get("/streams", headers=auth).json()) == 1  # nothing written


def test_stream_service_checks_limit_keys_too(workspace_id: UUID) -> None:
    """Callers other than the API (the CLI, other services) meet the same rules."""
    fields = {"name": "s", "pipeline": "builtin.noop", "params": {}}
    for keys, message in [
        (["Bad"], "a limit key matches"),
        (["a", "a"], "more than once"),
        ([f"k{index}" for index in range(9)], "at most 8"),
    ]:
        with pytest.raises(InvalidInput) as raised:
            streams.create(workspace_id, {**fields, "limit_keys": keys})
        assert (raised.value.field, raised.value.location) == ("limit_keys", "body")
        assert message in raised.value.message
    with pytest.raises(InvalidInput) as raised:
        streams.create(workspace_id, {**fields, "priority": "urgent"})
    assert raised.value.field == "priority"
