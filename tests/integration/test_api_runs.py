"""The /runs endpoints: auth, idempotency, listing, cancel and retry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from app import db, workspaces
from app.celery import app as celery_app
from app.settings import get_settings
from tests.fixtures.proxy import TcpProxy, upstream_of
from tests.fixtures.queries import runs_of
from tests.fixtures.services import run_row, unpublished_run, wait_for_status


def test_requests_without_a_valid_key_get_401(api: TestClient, make_stream: Any) -> None:
    stream = make_stream()
    assert api.post("/runs", json={"stream_id": stream["id"]}).status_code == 401
    wrong = {"Authorization": "Bearer rw_not-a-key"}
    response = api.get("/streams", headers=wrong)
    assert response.status_code == 401
    assert response.json() == {"detail": "invalid or revoked API key"}
    assert api.get("/health").status_code == 200


def test_a_revoked_key_gets_401_where_the_key_is_checked_in_the_statement(
    api: TestClient, make_stream: Any
) -> None:
    """POST /runs and GET /runs/{id} check the key in the statement that does the work: a
    revoked key is a 401 (not a 404), makes no run, and reads no run, even its own."""
    stream = make_stream()
    issued = workspaces.issue_key("acme", "soon revoked")
    headers = {"Authorization": f"Bearer {issued.key}"}
    made = api.post("/runs", json={"stream_id": stream["id"]}, headers=headers)
    assert made.status_code == 202
    assert api.get(f"/runs/{made.json()['id']}", headers=headers).status_code == 200

    workspaces.revoke_key(issued.id)
    for response in (
        api.post("/runs", json={"stream_id": stream["id"]}, headers=headers),
        api.post("/runs", json={"stream_id": str(uuid4())}, headers=headers),
        api.get(f"/runs/{made.json()['id']}", headers=headers),
        api.get(f"/runs/{uuid4()}", headers=headers),
    ):
        assert response.status_code == 401
        assert response.json() == {"detail": "invalid or revoked API key"}
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert [run.id for run in runs_of(UUID(stream["id"]))] == [UUID(made.json()["id"])]


def test_a_bad_key_is_a_401_before_a_bad_body_is_a_422(api: TestClient, make_stream: Any) -> None:
    """POST /runs checks its key in its own statement, after the body is parsed: a caller
    without a valid key still learns nothing but that."""
    wrong = {"Authorization": "Bearer rw_not-a-key"}
    for body in ({"stream_id": "not-a-uuid"}, {"stream_id": make_stream()["id"], "x": 1}):
        response = api.post("/runs", json=body, headers=wrong)
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"] == "Bearer"
    long_key = {**wrong, "Idempotency-Key": "k" * 201}
    assert api.post("/runs", json={"stream_id": str(uuid4())}, headers=long_key).status_code == 401


def test_while_postgres_is_cut_off_the_api_answers_503_soon_and_serves_again_at_once(
    isolated_queues: str,  # no worker runs these runs: this test's Postgres is the proxy
    database_url: str,
    auth: dict[str, str],
    tcp_proxy: Callable[[tuple[str, int]], TcpProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The async routes' pool: no connection within ASYNC_CHECKOUT_SECONDS is a 503, and a
    Postgres that is back is used by the next request, however long it was away."""
    proxy = tcp_proxy(upstream_of(database_url, 5432))
    monkeypatch.setenv("DATABASE_URL", proxy.url(database_url))
    get_settings.cache_clear()
    with TestClient(create_app()) as api:
        made = api.post("/streams", json={"name": "s", "pipeline": "builtin.noop"}, headers=auth)
        stream = made.json()
        body = {"stream_id": stream["id"]}
        assert api.post("/runs", json=body, headers=auth).status_code == 202
        proxy.cut()
        cut_at = time.monotonic()
        while time.monotonic() - cut_at < 8:  # long enough for several reconnect attempts
            asked = time.monotonic()
            response = api.post("/runs", json=body, headers=auth)
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "2"
            assert time.monotonic() - asked < db.ASYNC_CHECKOUT_SECONDS + 1
        proxy.forward()
        back_at = time.monotonic()
        assert api.post("/runs", json=body, headers=auth).status_code == 202
        assert api.get(f"/runs/{stream['id']}", headers=auth).status_code == 404
        assert time.monotonic() - back_at < 1.5

        # A restart breaks every idle connection: the first request to find one broken
        # empties the pool, so only it fails.
        for _ in range(3):
            assert api.post("/runs", json=body, headers=auth).status_code == 202
        proxy.cut()
        proxy.forward()
        answers = [api.post("/runs", json=body, headers=auth).status_code for _ in range(3)]
        assert answers in ([503, 202, 202], [202, 202, 202])
    assert len(runs_of(stream["id"])) == 5 + answers.count(202)


@pytest.mark.timeout(60)
def test_an_api_that_fails_to_start_closes_what_it_opened(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Startup stops at the broker's client (a layout it cannot write): the pool opened
    before it is closed, so the process can exit (an open pool kept it alive)."""
    options = {**celery_app.conf.broker_transport_options, "sep": ":"}
    monkeypatch.setitem(celery_app.conf, "broker_transport_options", options)
    with pytest.raises(RuntimeError, match="sep"), TestClient(create_app()):
        pass
    with pytest.raises(RuntimeError, match="not open"):
        asyncio.run(_checkout())


async def _checkout() -> None:
    async with db.async_autocommit():
        pass


def test_same_idempotency_key_gives_one_run(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream()
    headers = {**auth, "Idempotency-Key": "order-42"}
    first = api.post("/runs", json={"stream_id": stream["id"]}, headers=headers)
    second = api.post("/runs", json={"stream_id": stream["id"]}, headers=headers)

    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"]
    listed = api.get("/runs", params={"stream_id": stream["id"]}, headers=auth).json()
    assert len(listed["items"]) == 1


def test_idempotency_key_reused_for_another_stream_is_a_conflict(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    headers = {**auth, "Idempotency-Key": "k1"}
    assert (
        api.post("/runs", json={"stream_id": make_stream()["id"]}, headers=headers).status_code
        == 202
    )
    response = api.post("/runs", json={"stream_id": make_stream()["id"]}, headers=headers)
    assert response.status_code == 409


def test_bad_run_requests_get_422_naming_the_field(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream()
    cases = [
        ({"stream_id": "not-a-uuid"}, ["body", "stream_id"]),
        ({"stream_id": stream["id"], "run_type": "scheduled"}, ["body", "run_type"]),
        ({"stream_id": stream["id"], "params": [1, 2]}, ["body", "params"]),
        ({"stream_id": stream["id"], "surprise": 1}, ["body", "surprise"]),
    ]
    for body, location in cases:
        response = api.post("/runs", json=body, headers=auth)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"] == location
    response = api.post("/runs", content=b"{not json", headers=auth)
    assert response.status_code == 422


def test_unknown_stream_is_404(api: TestClient, auth: dict[str, str]) -> None:
    response = api.post("/runs", json={"stream_id": str(uuid4())}, headers=auth)
    assert response.status_code == 404
    assert "not found" in response.json()["detail"]


def test_workspaces_never_see_each_others_runs_or_streams(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream()
    run = api.post("/runs", json={"stream_id": stream["id"]}, headers=auth).json()
    other = {"Authorization": f"Bearer {workspaces.create_key('globex')[1]}"}

    assert api.get(f"/runs/{run['id']}", headers=other).status_code == 404
    assert api.delete(f"/runs/{run['id']}", headers=other).status_code == 404
    assert api.post(f"/runs/{run['id']}/retry", headers=other).status_code == 404
    assert api.get(f"/streams/{stream['id']}", headers=other).status_code == 404
    assert (
        api.patch(f"/streams/{stream['id']}", json={"name": "x"}, headers=other).status_code == 404
    )
    assert api.delete(f"/streams/{stream['id']}", headers=other).status_code == 404
    assert api.post("/runs", json={"stream_id": stream["id"]}, headers=other).status_code == 404
    assert api.get("/runs", headers=other).json()["items"] == []
    assert api.get("/streams", headers=other).json() == []
    untouched = run_row(run["id"])  # the other workspace's DELETE did not cancel it
    assert (untouched.status != "cancelled", untouched.cancel_requested_at) == (True, None)


def test_cancel_of_waiting_run_without_worker(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    run_id = unpublished_run(make_stream()["id"])
    response = api.delete(f"/runs/{run_id}", headers=auth)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    row = run_row(run_id)
    assert row.completed_at is not None and row.cancel_requested_at is not None
    again = api.delete(f"/runs/{run_id}", headers=auth)
    assert again.status_code == 409
    assert "already cancelled" in again.json()["detail"]


def test_retry_makes_a_new_run_pointing_at_the_old(
    api: TestClient, auth: dict[str, str], make_stream: Any, worker: Any
) -> None:
    stream = make_stream("builtin.fail")
    failed = api.post("/runs", json={"stream_id": stream["id"]}, headers=auth).json()
    wait_for_status(failed["id"], "failed")

    response = api.post(f"/runs/{failed['id']}/retry", headers=auth)
    assert response.status_code == 202
    retried = response.json()
    assert retried["retry_of"] == failed["id"]
    assert retried["id"] != failed["id"]
    assert retried["attempt"] == 0
    wait_for_status(retried["id"], "failed")


def test_only_failed_or_cancelled_runs_can_be_retried(
    api: TestClient, auth: dict[str, str], make_stream: Any, worker: Any
) -> None:
    run = api.post("/runs", json={"stream_id": make_stream()["id"]}, headers=auth).json()
    wait_for_status(run["id"], "completed")
    response = api.post(f"/runs/{run['id']}/retry", headers=auth)
    assert response.status_code == 409


def test_list_runs_newest_first_with_cursor_and_filters(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    first, second = make_stream(), make_stream()
    made = [
        api.post(
            "/runs", json={"stream_id": stream["id"], "run_type": run_type}, headers=auth
        ).json()
        for stream, run_type in [(first, "manual"), (second, "test"), (first, "test")] * 2
    ]
    newest_first = [run["id"] for run in reversed(made)]

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = api.get("/runs", params=params, headers=auth).json()
        seen += [run["id"] for run in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == newest_first

    only = api.get("/runs", params={"stream_id": first["id"], "run_type": "test"}, headers=auth)
    assert [run["id"] for run in only.json()["items"]] == [made[5]["id"], made[2]["id"]]


def test_list_runs_rejects_bad_filters(api: TestClient, auth: dict[str, str]) -> None:
    for params, field in [
        ({"status": "sleeping"}, "status"),
        ({"limit": 0}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"run_type": "cron"}, "run_type"),
    ]:
        response = api.get("/runs", params=params, headers=auth)
        assert response.status_code == 422, params
        assert response.json()["detail"][0]["loc"] == ["query", field]


def test_oversized_body_is_413(api: TestClient, auth: dict[str, str], make_stream: Any) -> None:
    stream = make_stream()
    body = {"stream_id": stream["id"], "params": {"blob": "x" * 2_000_000}}
    response = api.post("/runs", json=body, headers=auth)
    assert response.status_code == 413


def test_run_json_has_priority_limit_keys_and_waiting_for(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    run = api.post("/runs", json={"stream_id": make_stream()["id"]}, headers=auth).json()
    assert (run["priority"], run["limit_keys"], run["waiting_for"]) == ("normal", [], None)

    stream = UUID(make_stream()["id"])
    until = datetime(2030, 1, 1, tzinfo=UTC)
    waiting = {"kind": "rate", "key": "openai", "until": until.isoformat()}
    held = unpublished_run(stream, priority="low", limit_keys=["openai", "db"], waiting_for=waiting)
    shown = api.get(f"/runs/{held}", headers=auth).json()
    assert (shown["priority"], shown["limit_keys"]) == ("low", ["openai", "db"])
    assert shown["waiting_for"]["kind"] == "rate" and shown["waiting_for"]["key"] == "openai"
    assert datetime.fromisoformat(shown["waiting_for"]["until"]) == until
    workspace = unpublished_run(stream, waiting_for={"kind": "workspace", "key": None})
    assert api.get(f"/runs/{workspace}", headers=auth).json()["waiting_for"] == {
        "kind": "workspace",
        "key": None,
        "until": None,
    }
    listed = api.get("/runs", params={"stream_id": str(stream)}, headers=auth).json()["items"]
    assert [item["waiting_for"]["kind"] for item in listed] == ["workspace", "rate"]


def test_post_runs_priority_overrides_the_streams(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream(priority="low")
    made = api.post("/runs", json={"stream_id": stream["id"], "priority": "high"}, headers=auth)
    assert made.status_code == 202, made.text
    assert api.get(f"/runs/{made.json()['id']}", headers=auth).json()["priority"] == "high"
    assert run_row(made.json()["id"]).priority == "high"
    bad = api.post("/runs", json={"stream_id": stream["id"], "priority": "asap"}, headers=auth)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "priority"]
