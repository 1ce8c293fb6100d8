"""The console's pages and forms over HTTP: sign-in, every page, the guards of its forms, and
bad input answered with a page that says what is wrong (never a 500)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app import db, workspaces
from app.models import pipeline_executions
from app.schedules import ticker
from tests.fixtures.services import run_row, unpublished_run, wait_for, wait_for_status

WEEKLY = {"cron": "0 6 * * 1", "timezone": "Europe/Berlin"}


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found[1]


@pytest.fixture
def console(api: TestClient, api_key: str) -> TestClient:
    """The API's client, signed in to the console with the test's key."""
    answer = api.post("/ui/sign-in", data={"key": api_key}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui"
    return api


def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_it(
    api: TestClient, api_key: str
) -> None:
    assert api.get("/ui", follow_redirects=False).headers["location"].startswith("/ui/sign-in")
    refresh = api.get("/ui/live/running", headers={"Runway-Fragment": "1"})
    assert refresh.status_code == 401  # the page's script stops, rather than show a form
    wrong = api.post("/ui/sign-in", data={"key": "rw_nope"})
    assert wrong.status_code == 401 and "unknown or revoked" in wrong.text

    signed = api.post("/ui/sign-in", data={"key": api_key, "next": "//evil.example/"})
    assert signed.history[0].headers["location"] == "/ui"  # never off to another site
    cookie = signed.history[0].headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert api_key not in cookie

    out = api.post("/ui/sign-out", data={"csrf": _csrf(signed)}, follow_redirects=False)
    assert out.status_code == 303
    assert api.get("/ui", follow_redirects=False).status_code == 303


def test_every_page_renders(
    console: TestClient,
    make_stream: Callable[..., dict[str, Any]],
    auth: dict[str, str],
    worker: Any,
) -> None:
    stream = make_stream("builtin.noop", schedule_config=WEEKLY, limit_keys=["openai"])
    run = console.post("/runs", json={"stream_id": stream["id"]}, headers=auth).json()
    wait_for_status(run["id"], "completed")
    console.put("/limits/openai", json={"max_concurrent": 2}, headers=auth)

    overview = console.get("/ui")
    assert overview.status_code == 200 and "Next scheduled" in overview.text
    listed = console.get("/ui/streams")
    assert "every Monday at 06:00 Europe/Berlin" in listed.text
    page = console.get(f"/ui/streams/{stream['id']}")
    assert page.status_code == 200 and "Run now" in page.text
    assert page.text.count("<time datetime=") >= 5  # the next five fire times
    assert console.get(f"/ui/runs?stream_id={stream['id']}").status_code == 200
    assert console.get(f"/ui/runs/{run['id']}").status_code == 200
    assert "openai" in console.get("/ui/limits").text
    assert console.get("/ui/webhooks").status_code == 200
    assert "/ui" not in str(console.get("/openapi.json").json()["paths"])


def test_forms_refuse_other_sites_and_missing_tokens(
    console: TestClient, make_stream: Callable[..., dict[str, Any]], worker: Any
) -> None:
    stream = make_stream("builtin.noop")
    action = f"/ui/streams/{stream['id']}/run"
    token = _csrf(console.get(f"/ui/streams/{stream['id']}"))
    form = {"csrf": token, "token": uuid4().hex}

    forged = console.post(action, data={**form, "csrf": "forged"}, follow_redirects=False)
    assert forged.status_code == 403
    not_ascii = console.post(action, data={**form, "csrf": "ü"}, follow_redirects=False)
    assert not_ascii.status_code == 403
    not_a_url = console.post(action, data=form, headers={"Origin": "http://[::1"})
    assert not_a_url.status_code == 403
    other_site = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert console.post(action, data=form, headers=other_site).status_code == 403
    same_site = {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"}
    assert console.post(action, data=form, headers=same_site).status_code == 403
    default_port = {"Origin": "http://testserver", "Host": "testserver:80"}
    made = console.post(action, data=form, headers=default_port, follow_redirects=False)
    assert made.status_code == 303 and made.headers["location"].startswith("/ui/runs/")
    again = console.post(action, data=form, follow_redirects=False)  # the same form, twice
    assert again.headers["location"] == made.headers["location"]
    wait_for_status(made.headers["location"].rsplit("/", 1)[1], "completed")


def test_another_workspaces_ids_and_bad_input_are_pages_not_errors(
    console: TestClient, make_stream: Callable[..., dict[str, Any]]
) -> None:
    stream = make_stream("builtin.noop")
    other_key = workspaces.create_key("globex", "tests")[1]
    other = console.post(
        "/streams",
        json={"name": "theirs", "pipeline": "builtin.noop"},
        headers={"Authorization": f"Bearer {other_key}"},
    ).json()
    assert console.get(f"/ui/streams/{other['id']}").status_code == 404
    assert console.get(f"/ui/runs/{uuid4()}").status_code == 404
    assert console.get("/ui/streams/not-an-id").status_code == 404
    assert console.get("/ui/runs?status=bogus").status_code == 422
    assert console.get("/ui/runs?cursor=nope").status_code == 422
    assert console.get("/ui/streams?page=100000000000000000000").status_code == 422

    token = _csrf(console.get(f"/ui/streams/{stream['id']}"))
    bad_json = console.post(
        f"/ui/streams/{stream['id']}/run",
        data={"csrf": token, "token": uuid4().hex, "params": "[1, 2"},
    )
    assert bad_json.status_code == 422 and "params" in bad_json.text
    no_schedule = console.post(
        f"/ui/streams/{stream['id']}/backfill",
        data={"csrf": token, "from": "2026-01-01T00:00Z", "to": "2026-01-02T00:00Z"},
    )
    assert no_schedule.status_code == 409
    unfiltered = console.post("/ui/runs/cancel", data={"csrf": token})
    assert unfiltered.status_code == 422


def test_runs_list_pages_by_cursor_and_acts_on_what_the_filter_selects(
    console: TestClient, make_stream: Callable[..., dict[str, Any]], worker: Any
) -> None:
    stream = make_stream("builtin.noop")
    other = make_stream("builtin.noop")
    waiting = [unpublished_run(UUID(stream["id"])) for _ in range(52)]
    spared = unpublished_run(UUID(other["id"]))

    first = console.get(f"/ui/runs?stream_id={stream['id']}")
    assert first.text.count('href="/ui/runs/') == 50
    assert 'action="/ui/runs/cancel"' in first.text  # offered for a stream's runs
    older = re.search(r'href="(/ui/runs\?[^"]*cursor=[^"]+)"', first.text)
    assert older, "no link to the next page"
    second = console.get(html.unescape(older[1]))
    assert second.text.count('href="/ui/runs/') == 2

    token = _csrf(first)
    cancelled = console.post("/ui/runs/cancel", data={"csrf": token, "stream_id": stream["id"]})
    assert "52 runs cancelled" in cancelled.text
    assert {run_row(run).status for run in waiting} == {"cancelled"}
    assert run_row(spared).status == "pending"

    retried = console.post(
        "/ui/runs/retry", data={"csrf": token, "stream_id": stream["id"], "status": "cancelled"}
    )
    assert "52 runs retried" in retried.text
    wait_for(lambda: len(_completed(stream["id"])) == 52, 30, "the retries to complete")


def _ticked(stream_id: str) -> bool:
    with db.unit_of_work() as conn:
        return bool(
            conn.execute(
                sa.text(
                    "SELECT last_scheduled_run IS NOT NULL FROM research_streams WHERE id = :id"
                ),
                {"id": stream_id},
            ).scalar()
        )


def _completed(stream_id: str) -> list[Any]:
    with db.unit_of_work() as conn:
        return list(
            conn.execute(
                sa.select(pipeline_executions.c.id).where(
                    pipeline_executions.c.stream_id == stream_id,
                    pipeline_executions.c.status == "completed",
                )
            )
        )


def test_confirming_a_backfill_creates_what_its_dry_run_showed(
    console: TestClient, make_stream: Callable[..., dict[str, Any]]
) -> None:
    """`to` in the future: slots that come due between the dry run and the confirmation are
    not created by it (the confirmation names the dry run's last slot)."""
    stream = make_stream("builtin.noop", schedule_config={"interval_seconds": 1})
    page_ = console.get(f"/ui/streams/{stream['id']}")
    wait_for(lambda: ticker.tick().streams >= 0 and _ticked(stream["id"]), 15, "a first slot")
    recently = datetime.now(UTC) - timedelta(seconds=30)
    preview = console.post(
        f"/ui/streams/{stream['id']}/backfill",
        data={"csrf": _csrf(page_), "from": recently.isoformat(), "to": "2999-01-01T00:00Z"},
    )
    assert preview.status_code == 200
    end = re.search(r'name="to" value="([^"]+)"', preview.text.split("Dry run", 1)[1])
    assert end, preview.text[:2000]
    assert not end[1].startswith("2999")
