"""/docs and /redoc render from the API's own assets, with every other host unreachable."""

from __future__ import annotations

import httpx
from playwright.sync_api import Browser, expect

from tests.fixtures.browser import offline_page


def test_swagger_ui_renders_the_operations_offline(browser: Browser, live_api: str) -> None:
    page, blocked = offline_page(browser, live_api)
    page.goto(f"{live_api}/docs")

    create_run = page.locator(".opblock-post", has_text="/runs").first
    expect(create_run).to_be_visible(timeout=15_000)
    operations = sum(
        len(path) for path in httpx.get(f"{live_api}/openapi.json").json()["paths"].values()
    )
    expect(page.locator(".opblock")).to_have_count(operations, timeout=5_000)
    assert blocked == []
    page.context.close()


def test_redoc_renders_the_operations_offline(browser: Browser, live_api: str) -> None:
    page, blocked = offline_page(browser, live_api)
    page.goto(f"{live_api}/redoc")

    expect(page.get_by_text("Trigger, watch and cancel").first).to_be_visible(timeout=15_000)
    expect(page.locator("[data-section-id^='tag/runs']").first).to_be_attached()
    assert blocked == []
    page.context.close()
