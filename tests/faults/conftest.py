"""Fault scenarios: what each one cost, printed as a table at the end of the run."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest
import redis

from app.settings import get_settings
from tests.faults.helpers import Scenario
from tests.fixtures.processes import LOGS, Process

REPORT = LOGS / f"faults-{os.getpid()}.jsonl"


@pytest.fixture
def scenario(
    make_stream: Callable[..., dict[str, Any]],
    workspace_id: UUID,
    spawn: Callable[..., Process],
    redis_client: redis.Redis,
) -> Iterator[Scenario]:
    """Queues and RedBeat keys of the scenario's own, for it and every process it starts."""
    previous = os.environ["RUNWAY_QUEUE_PREFIX"]
    os.environ["RUNWAY_QUEUE_PREFIX"] = f"fault-{uuid.uuid4().hex[:8]}"
    get_settings.cache_clear()
    LOGS.mkdir(parents=True, exist_ok=True)
    yield Scenario(make_stream, workspace_id, spawn, redis_client, REPORT)
    os.environ["RUNWAY_QUEUE_PREFIX"] = previous
    get_settings.cache_clear()


def pytest_sessionstart(session: pytest.Session) -> None:
    REPORT.unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT.exists():
        return
    rows = [json.loads(line) for line in REPORT.read_text().splitlines()]
    terminalreporter.section("fault scenarios")
    header = f"{'scenario':58} {'runs':>5} {'lost':>5} {'twice':>6} {'settled':>8}"
    terminalreporter.write_line(header)
    for row in rows:
        terminalreporter.write_line(
            f"{row['scenario']:58} {row['runs']:5} {row['lost']:5} {row['twice']:6}"
            f" {row['seconds']:7.1f}s"
        )
