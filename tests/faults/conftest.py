"""Fault scenarios: what each one cost, printed as a table at the end of the run."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
import redis

from tests.faults.helpers import Scenario
from tests.fixtures.processes import LOGS, Process

REPORT = LOGS / f"faults-{os.getpid()}.jsonl"


@pytest.fixture
def scenario(
    isolated_queues: str,
    make_stream: Callable[..., dict[str, Any]],
    workspace_id: UUID,
    spawn: Callable[..., Process],
    redis_client: redis.Redis,
) -> Scenario:
    """A scenario on queues of its own, for it and every process it starts."""
    LOGS.mkdir(parents=True, exist_ok=True)
    return Scenario(make_stream, workspace_id, spawn, redis_client, REPORT)


def pytest_sessionstart(session: pytest.Session) -> None:
    REPORT.unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT.exists():
        return
    rows = [json.loads(line) for line in REPORT.read_text().splitlines()]
    terminalreporter.section("fault scenarios")
    header = (
        f"{'scenario':66} {'runs':>5} {'lost':>5} {'twice':>6} {'ran concurrently':>17}"
        f" {'settled':>8}"
    )
    terminalreporter.write_line(header)
    for row in rows:
        terminalreporter.write_line(
            f"{row['scenario']:66} {row['runs']:5} {row['lost']:5} {row['twice']:6}"
            f" {row['concurrent']:17} {row['seconds']:7.1f}s"
        )
