"""Screenshots of the console for the README: the overview, a stream and a run.

    .venv/bin/python -m scripts.screenshots        (or: make screenshots)

Starts the API and a worker of its own against a throwaway database `runway_screenshots`
(dropped afterwards) and its own queue names, fills a workspace with a few streams and runs,
and photographs the pages in Debian's headless Chromium into docs/screenshots/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from app.settings import DEFAULT_DATABASE_URL

DATABASE = "runway_screenshots"
_base = make_url(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
os.environ.update(
    {
        "DATABASE_URL": _base.set(database=DATABASE).render_as_string(hide_password=False),
        "RUNWAY_QUEUE_PREFIX": "screenshots",
        "RUNWAY_LOG_FORMAT": "console",
        "RUNWAY_HEARTBEAT_SECONDS": "1",
        "RUNWAY_LEASE_SECONDS": "5",
        "RUNWAY_CANCEL_GRACE_SECONDS": "3",
    }
)

import httpx  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402

from app import db, schema, workspaces  # noqa: E402
from scripts.chromium import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: E402

OUT = Path("docs/screenshots")
BIN = Path(sys.executable).parent


def _wait(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = check()
        except httpx.TransportError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"screenshots: timed out waiting for {what}")


@contextmanager
def _stack(port: int) -> Iterator[str]:
    """The API and a worker, stopped on the way out."""
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed below
    api = [str(BIN / "uvicorn"), "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    worker = [str(BIN / "celery"), "-A", "app", "worker", "-c", "4", "-n", "screenshots@%h"]
    processes = [
        subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        for command in (api, worker)
    ]
    origin = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(f"{origin}/health").status_code == 200, 30, "the API")
        yield origin
    finally:
        for process in processes:  # each leads a group of its own: its pool goes with it
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


class Client:
    def __init__(self, origin: str, key: str) -> None:
        self.http = httpx.Client(base_url=origin, headers={"Authorization": f"Bearer {key}"})

    def call(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.http.request(method, path, json=body, timeout=10)
        if answer.status_code >= 400:
            raise SystemExit(f"screenshots: {method} {path}: {answer.status_code} {answer.text}")
        return answer.json() if answer.content else None

    def run(self, stream: dict[str, Any], **params: Any) -> dict[str, Any]:
        made: dict[str, Any] = self.call(
            "POST", "/runs", {"stream_id": stream["id"], "params": params}
        )
        return made

    def settle(self) -> None:
        def idle() -> bool:
            status = self.call("GET", "/status")
            return not status["pending_count"] and not status["retrying_count"]

        _wait(idle, 120, "the runs to end")


def _fill(client: Client) -> dict[str, Any]:
    """A workspace with some history; returns what the screenshots show."""
    client.call("PUT", "/limits/openai", {"max_concurrent": 4})
    digest = client.call(
        "POST",
        "/streams",
        {
            "name": "Microbiome digest",
            "pipeline": "demo.report",
            "params": {"query": "microbiome", "step_seconds": 0.1},
            "schedule_config": {"cron": "0 6 * * 1", "timezone": "Europe/Berlin"},
            "limit_keys": ["openai"],
            "priority": "high",
        },
    )
    watch = client.call(
        "POST",
        "/streams",
        {
            "name": "Competitor watch",
            "pipeline": "builtin.flaky",
            "params": {"fail_times": 0},
            "schedule_config": {"cron": "*/30 * * * *"},
        },
    )
    archive = client.call(
        "POST",
        "/streams",
        {
            "name": "Nightly archive",
            "pipeline": "builtin.fail",
            "schedule_config": {"cron": "0 2 * * *", "timezone": "America/New_York"},
        },
    )
    nap = client.call(
        "POST", "/streams", {"name": "Long crawl", "pipeline": "builtin.sleep", "params": {}}
    )
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    window = {"from": (now - timedelta(hours=6)).isoformat(), "to": now.isoformat()}
    client.call("POST", f"/streams/{watch['id']}/backfill", window)
    for _ in range(6):
        client.run(digest)
    for fail_times in (0, 0, 5, 0):
        client.run(watch, fail_times=fail_times)
    client.run(archive)
    client.settle()
    client.call("PATCH", f"/streams/{archive['id']}", {"schedule_config": {"enabled": False}})
    running = client.run(nap, seconds=40)
    return {"stream": digest, "backfilled": watch, "run": running}


def _shoot(page: Page, origin: str, key: str, shown: dict[str, Any]) -> None:
    page.goto(f"{origin}/ui/sign-in")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_selector(".status, .runs-live", timeout=15_000)
    time.sleep(2)  # let the running run's progress bar move a little
    page.reload()
    page.screenshot(path=str(OUT / "overview.png"), full_page=True)
    page.goto(f"{origin}/ui/streams/{shown['backfilled']['id']}")
    page.screenshot(path=str(OUT / "stream.png"))
    page.goto(f"{origin}/ui/runs/{shown['run']['id']}")
    page.wait_for_selector(".status[data-status=running]", timeout=15_000)
    time.sleep(3)
    page.screenshot(path=str(OUT / "run.png"))


def main() -> None:
    url = os.environ["DATABASE_URL"]
    _drop(url)
    schema.migrate(url)
    db.init(url)
    key = workspaces.create_key("acme-research", "screenshots")[1]
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        with _stack(free_port()) as origin:
            shown = _fill(Client(origin, key))
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                _shoot(page, origin, key, shown)
                browser.close()
    finally:
        db.dispose()
        _drop(url)
    print(f"screenshots in {OUT}/: overview.png, stream.png, run.png")


def _drop(url: str) -> None:
    import psycopg

    admin = make_url(url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


if __name__ == "__main__":
    main()
