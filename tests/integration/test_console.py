"""The console in a real browser: Debian's Chromium, headless, driven by Playwright, against a
real API server process, Postgres and a Celery worker.

One journey (sign in, a stream and its next fire times, Run now and its progress moving to
`completed` without a reload, cancelling a running run, a backfill with a dry run first, sign
out) and one test of the guards (a cross-site and a same-site POST refused, another
workspace's stream 404)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from app import db, workspaces
from app.models import pipeline_executions
from tests.fixtures.services import wait_for

SLOW = 15_000  # ms: what a page may take to show a run's change
WEEKLY = {"cron": "0 6 * * 1", "timezone": "Europe/Berlin"}


def _stream(origin: str, key: str, **fields: Any) -> dict[str, Any]:
    answer = httpx.post(
        f"{origin}/streams", json=fields, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


def _runs_of(stream_id: str) -> list[Any]:
    with db.unit_of_work() as conn:
        return list(
            conn.execute(
                sa.select(pipeline_executions.c.run_type, pipeline_executions.c.status).where(
                    pipeline_executions.c.stream_id == stream_id
                )
            )
        )


@pytest.fixture
def context(browser: Browser, live_api: str) -> Iterator[BrowserContext]:
    """A browser context that reaches only the API, plus two pages of another origin that
    this test serves itself: `http://attacker.test/` (another site) and
    `http://127.0.0.1:9/` (the same site, another origin)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pages: dict[str, str] = {}

    def serve(route: Route) -> None:
        url = route.request.url
        if url.startswith(f"{live_api}/"):
            route.continue_()
        elif url in pages:
            route.fulfill(status=200, content_type="text/html", body=pages[url])
        else:
            route.abort()

    context.route("**/*", serve)
    context.attacker_pages = pages  # type: ignore[attr-defined]
    yield context
    context.close()


def _sign_in(page: Page, origin: str, key: str) -> None:
    page.goto(f"{origin}/ui")
    expect(page).to_have_url(re.compile(r"/ui/sign-in"))
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def test_the_console_journey(
    context: BrowserContext, live_api: str, api_key: str, worker: Any
) -> None:
    nap = _stream(
        live_api,
        api_key,
        name="nap",
        pipeline="builtin.sleep",
        params={"seconds": 4},
        schedule_config=WEEKLY,
    )
    digest = _stream(
        live_api,
        api_key,
        name="digest",
        pipeline="builtin.noop",
        schedule_config={"cron": "*/10 * * * *"},
    )
    page = context.new_page()
    _sign_in(page, live_api, api_key)

    # Streams: the schedule in words, and the next five fire times.
    page.click("nav >> text=Streams")
    row = page.locator("tr", has_text="nap")
    expect(row).to_contain_text("every Monday at 06:00 Europe/Berlin")
    expect(row.locator("time")).to_have_count(5)
    row.locator("a.name").click()
    expect(page.get_by_role("heading", name="nap")).to_be_visible()
    expect(page.locator("ol.upcoming time")).to_have_count(5)

    # Run now: the run's page, its progress moving, then completed, all without a reload.
    page.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/ui/runs/[0-9a-f-]{36}$"))
    page.evaluate("window.notReloaded = true")
    seen: set[str] = set()

    def progress_moved_and_completed() -> bool:
        bar = page.locator("[role=progressbar]")
        if bar.count():
            seen.add(bar.first.get_attribute("aria-valuenow") or "")
        return page.locator(".status[data-status=completed]").count() == 1

    wait_for(progress_moved_and_completed, 20, "the run to complete on the page")
    assert len(seen - {"0", "100"}) >= 2, seen  # it moved on the way
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("pre.result")).to_contain_text("slept_seconds")

    # Cancel a running run.
    page.goto(f"{live_api}/ui/streams/{nap['id']}")
    page.fill("textarea[name=params]", '{"seconds": 60}')
    page.get_by_role("button", name="Run now").click()
    expect(page.locator(".status[data-status=running]")).to_be_visible(timeout=SLOW)
    page.click("button:has-text('Cancel')")
    expect(page.locator(".status[data-status=cancelled]")).to_be_visible(timeout=SLOW)
    expect(page.locator(".error-box")).to_contain_text("cancel")

    # Backfill the last hour of a ten-minute schedule: a dry run first, which creates nothing.
    now = datetime.now(UTC)
    end = now.replace(minute=now.minute - now.minute % 10, second=0, microsecond=0)
    start = end - timedelta(hours=1)  # [start, end): six slots, every one past
    page.goto(f"{live_api}/ui/streams/{digest['id']}")
    page.fill("input[name=from]", start.isoformat())
    page.fill("input[name=to]", end.isoformat())
    page.click("button:has-text('Dry run')")
    expect(page.locator(".preview")).to_contain_text("6 runs would be created")
    assert _runs_of(digest["id"]) == []
    page.click("button:has-text('Create 6 runs')")
    expect(page.locator(".notice")).to_contain_text("6 runs created")
    assert len(_runs_of(digest["id"])) == 6
    expect(page.locator("table.ticks .t-backfilled")).to_have_count(6)

    # Sign out: the console asks to sign in again.
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("input[name=key]")).to_be_visible()
    page.goto(f"{live_api}/ui/streams")
    expect(page).to_have_url(re.compile(r"/ui/sign-in"))


def test_other_sites_and_other_workspaces_are_refused(
    context: BrowserContext, live_api: str, api_key: str
) -> None:
    mine = _stream(live_api, api_key, name="mine", pipeline="builtin.noop")
    other_key = workspaces.create_key("globex", "tests")[1]
    theirs = _stream(live_api, other_key, name="theirs", pipeline="builtin.noop")
    page = context.new_page()
    _sign_in(page, live_api, api_key)

    forged = f"""<form method="post" action="{live_api}/ui/streams/{mine["id"]}/run">
      <input name="csrf" value="guess"><input name="token" value="{"0" * 32}">
      <button>go</button></form>"""
    for attacker in ("http://attacker.test/", "http://127.0.0.1:9/"):  # another site; origin
        context.attacker_pages[attacker] = forged  # type: ignore[attr-defined]
        page.goto(attacker)
        with page.expect_response(lambda answer: answer.request.method == "POST") as posted:
            page.click("button")
        assert posted.value.status == 403, attacker
    assert _runs_of(mine["id"]) == []

    answer = page.goto(f"{live_api}/ui/streams/{theirs['id']}")
    assert answer is not None and answer.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
