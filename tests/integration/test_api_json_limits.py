"""JSON the API cannot store or serve back (too deep, lone surrogates) is a 422 naming the
field, before anything is written; no body, however deep, makes a 500."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app import db
from app.jsonvalues import MAX_JSON_DEPTH
from app.models import pipeline_executions, research_streams
from tests.fixtures.services import unpublished_run

JSON = {"Content-Type": "application/json"}


def deep(depth: int) -> dict[str, Any]:
    """An object `depth` levels deep."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def row_counts() -> tuple[int, int]:
    with db.unit_of_work() as conn:
        runs = conn.execute(sa.select(sa.func.count()).select_from(pipeline_executions)).scalar()
        streams = conn.execute(sa.select(sa.func.count()).select_from(research_streams)).scalar()
    return runs or 0, streams or 0


def assert_422_at(response: Any, location: list[Any], words: str) -> None:
    assert response.status_code == 422, response.text
    first = response.json()["detail"][0]
    assert first["loc"] == location, first
    assert words in first["msg"], first


def _cases(stream_id: str, value: Any) -> list[tuple[str, str, dict[str, Any], list[str]]]:
    """(method, path, body, location) of every body field that takes free JSON."""
    new = {"name": "s", "pipeline": "builtin.noop"}
    return [
        ("post", "/runs", {"stream_id": stream_id, "params": value}, ["body", "params"]),
        ("post", "/streams", {**new, "params": value}, ["body", "params"]),
        ("patch", f"/streams/{stream_id}", {"params": value}, ["body", "params"]),
        ("patch", f"/streams/{stream_id}", {"schedule_config": value}, ["body", "schedule_config"]),
    ]


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 300, 400, 900])
def test_deeply_nested_json_is_422_naming_the_field_and_writes_nothing(
    api: TestClient, auth: dict[str, str], make_stream: Any, depth: int
) -> None:
    stream = make_stream(schedule_config={"interval_seconds": 3600})
    before = row_counts()
    for method, path, body, location in _cases(stream["id"], deep(depth)):
        content = json.dumps(body).encode()
        response = api.request(method.upper(), path, content=content, headers={**auth, **JSON})
        assert_422_at(response, location, f"nested deeper than {MAX_JSON_DEPTH} levels")
    assert row_counts() == before
    assert api.get(f"/streams/{stream['id']}", headers=auth).json() == stream


def test_json_at_the_depth_limit_is_stored_and_served(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    params = deep(MAX_JSON_DEPTH)
    stream = make_stream(params=params)
    assert stream["params"] == params
    created = api.post("/runs", json={"stream_id": stream["id"], "params": params}, headers=auth)
    assert created.status_code == 202, created.text
    assert api.get(f"/runs/{created.json()['id']}", headers=auth).json()["params"] == params
    assert api.get("/runs", headers=auth).json()["items"][0]["params"] == params
    assert api.get("/streams", headers=auth).json()[0]["params"] == params


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b"{" * 100_000,
        b'{"name": "s", "pipeline": "builtin.noop", "params": ' + b'{"a": ' * 100_000,
        b'{"x": "' + b"\\" * 1000 + b'"' + b"[" * 100_000,
    ],
)
def test_a_body_nested_100000_deep_is_422_not_500(
    api: TestClient, auth: dict[str, str], make_stream: Any, body: bytes
) -> None:
    stream = make_stream()
    before = row_counts()
    paths = [("POST", "/runs"), ("POST", "/streams"), ("PATCH", f"/streams/{stream['id']}")]
    for method, path in paths:
        for headers in ({**auth, **JSON}, auth):  # FastAPI reads JSON without a content type
            response = api.request(method, path, content=body, headers=headers)
            assert response.status_code == 422, (path, response.text)
            assert f"nested deeper than {MAX_JSON_DEPTH} levels" in response.text
    assert row_counts() == before


def test_a_deep_field_is_named_even_when_the_body_is_broken(
    api: TestClient, auth: dict[str, str]
) -> None:
    body = b'{"name": "s", "pipeline": "builtin.noop", "params": ' + b"[" * 100_000
    response = api.post("/streams", content=body, headers={**auth, **JSON})
    assert_422_at(response, ["body", "params"], f"nested deeper than {MAX_JSON_DEPTH} levels")


def test_lone_surrogates_are_422_naming_the_field(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream()
    before = row_counts()
    lone = "\\udcff"  # JSON's escape of a lone surrogate: valid JSON, not valid UTF-8
    new = '"name": "s", "pipeline": "builtin.noop"'
    cases = [
        ("POST", "/runs", f'{{"stream_id": "{stream["id"]}", "params": {{"x": "{lone}"}}}}'),
        ("POST", "/runs", f'{{"stream_id": "{stream["id"]}", "params": {{"{lone}": 1}}}}'),
        ("POST", "/streams", f'{{{new}, "params": {{"x": ["{lone}"]}}}}'),
        ("POST", "/streams", f'{{"name": "{lone}", "pipeline": "builtin.noop"}}'),
        ("PATCH", f"/streams/{stream['id']}", f'{{"name": "a{lone}"}}'),
        ("PATCH", f"/streams/{stream['id']}", f'{{"params": {{"x": "{lone}"}}}}'),
        ("PATCH", f"/streams/{stream['id']}", f'{{"schedule_config": {{"cron": "{lone}"}}}}'),
    ]
    for method, path, body in cases:
        response = api.request(method, path, content=body.encode(), headers={**auth, **JSON})
        assert response.status_code == 422, (body, response.text)
        loc = response.json()["detail"][0]["loc"]
        assert loc[:1] == ["body"] and len(loc) >= 2, (body, loc)
    assert row_counts() == before
    assert api.get(f"/streams/{stream['id']}", headers=auth).json() == stream


def test_rows_stored_before_the_limit_are_still_served(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    """A value deeper than MAX_JSON_DEPTH but within what responses can carry, written before
    the limit existed, is shown as it is: the check guards the way in, not the way out."""
    stream = make_stream()
    legacy = deep(MAX_JSON_DEPTH + 50)
    run_id = unpublished_run(UUID(stream["id"]), params=legacy)
    assert api.get(f"/runs/{run_id}", headers=auth).json()["params"] == legacy
    assert api.get("/runs", headers=auth).json()["items"][0]["params"] == legacy
