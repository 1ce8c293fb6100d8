"""/limits: set, read, list and remove a workspace's limit keys; bad keys and bodies are 422
naming the field; another workspace's keys are 404; the counts come from the runs."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from app import workspaces
from app.limits.service import MAX_CONCURRENT, MAX_RATE_COUNT, MAX_RATE_PERIOD_SECONDS
from tests.fixtures.services import unpublished_run

OPENAI = {"max_concurrent": 4, "rate": {"count": 60, "period_seconds": 60}}


def test_put_get_list_replace_delete(api: TestClient, auth: dict[str, str]) -> None:
    put = api.put("/limits/openai", json=OPENAI, headers=auth)
    assert put.status_code == 200, put.text
    expected = {
        "key": "openai",
        "max_concurrent": 4,
        "rate": {"count": 60, "period_seconds": 60.0},
        "running": 0,
        "waiting": 0,
    }
    assert put.json() == expected
    assert api.get("/limits/openai", headers=auth).json() == expected
    api.put("/limits/a.b_c:d-1", json={"rate": {"count": 1, "period_seconds": 0.5}}, headers=auth)
    listed = api.get("/limits", headers=auth).json()
    assert [item["key"] for item in listed["items"]] == ["a.b_c:d-1", "openai"]
    assert listed["items"][0]["max_concurrent"] is None

    replaced = api.put("/limits/openai", json={"max_concurrent": 2}, headers=auth).json()
    assert (replaced["max_concurrent"], replaced["rate"]) == (2, None)  # PUT replaces
    assert api.put("/limits/openai", json={}, headers=auth).json()["max_concurrent"] is None

    assert api.delete("/limits/openai", headers=auth).status_code == 204
    assert api.get("/limits/openai", headers=auth).status_code == 404
    assert api.delete("/limits/openai", headers=auth).status_code == 404
    assert [item["key"] for item in api.get("/limits", headers=auth).json()["items"]] == [
        "a.b_c:d-1"
    ]
    assert api.get("/limits").status_code == 401


@pytest.mark.parametrize("key", ["OpenAI", "a b", "a" * 65, "é", "a+b"])
def test_bad_keys_are_422_naming_the_key(api: TestClient, auth: dict[str, str], key: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        body = {} if method == "PUT" else None
        answer = api.request(method, f"/limits/{key}", json=body, headers=auth)
        assert answer.status_code == 422, (method, answer.text)
        assert answer.json()["detail"][0]["loc"] == ["path", "key"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"max_concurrent": True}, ["max_concurrent"]),
        ({"max_concurrent": 0}, ["max_concurrent"]),
        ({"max_concurrent": -3}, ["max_concurrent"]),
        ({"max_concurrent": MAX_CONCURRENT + 1}, ["max_concurrent"]),
        ({"max_concurrent": 1.5}, ["max_concurrent"]),
        ({"rate": {"count": True, "period_seconds": 60}}, ["rate", "count"]),
        ({"rate": {"count": 0, "period_seconds": 60}}, ["rate", "count"]),
        ({"rate": {"count": MAX_RATE_COUNT + 1, "period_seconds": 60}}, ["rate", "count"]),
        ({"rate": {"count": 5, "period_seconds": 0}}, ["rate", "period_seconds"]),
        ({"rate": {"count": 5, "period_seconds": -1}}, ["rate", "period_seconds"]),
        ({"rate": {"count": 5, "period_seconds": True}}, ["rate", "period_seconds"]),
        ({"rate": {"count": 5, "period_seconds": "60"}}, ["rate", "period_seconds"]),
        (
            {"rate": {"count": 5, "period_seconds": MAX_RATE_PERIOD_SECONDS + 1}},
            ["rate", "period_seconds"],
        ),
        ({"rate": {"count": 5}}, ["rate", "period_seconds"]),
        ({"rate": 60}, ["rate"]),
        ({"burst": 3}, ["burst"]),
    ],
)
def test_bad_bodies_are_422_naming_the_field(
    api: TestClient, auth: dict[str, str], body: dict[str, Any], loc: list[str]
) -> None:
    answer = api.put("/limits/openai", json=body, headers=auth)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", *loc]
    assert api.get("/limits/openai", headers=auth).status_code == 404  # nothing written


def test_another_workspaces_keys_are_invisible(api: TestClient, auth: dict[str, str]) -> None:
    other = {"Authorization": f"Bearer {workspaces.create_key('globex')[1]}"}
    assert api.put("/limits/openai", json=OPENAI, headers=other).status_code == 200
    assert api.get("/limits/openai", headers=auth).status_code == 404
    assert api.delete("/limits/openai", headers=auth).status_code == 404
    assert api.get("/limits", headers=auth).json() == {"items": []}
    mine = api.put("/limits/openai", json={"max_concurrent": 1}, headers=auth).json()
    assert mine["max_concurrent"] == 1
    assert api.get("/limits/openai", headers=other).json()["max_concurrent"] == 4


def test_running_and_waiting_count_the_runs_naming_the_key(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = UUID(make_stream()["id"])
    api.put("/limits/openai", json={"max_concurrent": 1}, headers=auth)
    api.put("/limits/idle", json={"max_concurrent": 1}, headers=auth)
    gated = {"limit_keys": ["openai", "other"], "gated": True}
    unpublished_run(stream, status="running", attempt=1, **gated)
    waiting = {"kind": "concurrency", "key": "openai", "until": None}
    for _ in range(2):
        unpublished_run(stream, waiting_for=waiting, **gated)
    unpublished_run(stream, status="retrying", attempt=1, waiting_for=waiting, **gated)
    unpublished_run(stream, status="completed", attempt=1, **gated)  # neither

    found = api.get("/limits/openai", headers=auth).json()
    assert (found["running"], found["waiting"]) == (1, 3)
    listed = {item["key"]: item for item in api.get("/limits", headers=auth).json()["items"]}
    assert (listed["idle"]["running"], listed["idle"]["waiting"]) == (0, 0)
    assert "other" not in listed  # a key without a row has no limit
