"""Fault scenarios: what each one cost, printed as a table at the end of the run."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.settings import get_settings
from tests.fixtures.processes import LOGS

REPORT = LOGS / f"faults-{os.getpid()}.jsonl"


@pytest.fixture
def isolated() -> Iterator[str]:
    """Queues and RedBeat keys of this test's own, for it and every process it starts."""
    prefix = f"fault-{uuid.uuid4().hex[:8]}"
    previous = os.environ["RUNWAY_QUEUE_PREFIX"]
    os.environ["RUNWAY_QUEUE_PREFIX"] = prefix
    get_settings.cache_clear()
    yield prefix
    os.environ["RUNWAY_QUEUE_PREFIX"] = previous
    get_settings.cache_clear()


def pytest_sessionstart(session: pytest.Session) -> None:
    REPORT.unlink(missing_ok=True)


@pytest.fixture
def record() -> Callable[..., None]:
    def write(scenario: str, runs: int, lost: int, twice: int, seconds: float) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        line = {
            "scenario": scenario,
            "runs": runs,
            "lost": lost,
            "twice": twice,
            "seconds": round(seconds, 1),
        }
        with REPORT.open("a") as out:
            out.write(json.dumps(line) + "\n")

    return write


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT.exists():
        return
    rows = [json.loads(line) for line in REPORT.read_text().splitlines()]
    terminalreporter.section("fault scenarios")
    terminalreporter.write_line(
        f"{'scenario':58} {'runs':>5} {'lost':>5} {'twice':>6} {'settled':>8}"
    )
    for row in rows:
        terminalreporter.write_line(
            f"{row['scenario']:58} {row['runs']:5} {row['lost']:5} {row['twice']:6}"
            f" {row['seconds']:7.1f}s"
        )
