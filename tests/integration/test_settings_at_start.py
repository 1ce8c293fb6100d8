"""Settings that contradict each other stop every process at start with one line naming them."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.fixtures.processes import BIN, REPO

CONTRADICTION = {"RUNWAY_HEARTBEAT_SECONDS": "1", "RUNWAY_LEASE_SECONDS": "2"}
LINE = (
    "runway: invalid settings: RUNWAY_LEASE_SECONDS=2 must be longer than two heartbeats "
    "(RUNWAY_HEARTBEAT_SECONDS=1)"
)


@pytest.mark.parametrize(
    "command",
    [
        ["celery", "-A", "app", "worker", "--loglevel", "INFO"],
        ["celery", "-A", "app", "beat", "--loglevel", "INFO"],
        ["uvicorn", "api.main:app", "--port", "0"],
        ["runway", "migrate"],
    ],
    ids=["worker", "beat", "api", "cli"],
)
def test_contradictory_settings_stop_the_process_with_one_line(command: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), **CONTRADICTION}
    finished = subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode != 0
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert lines[0].startswith(LINE), finished.stderr
    assert "Traceback" not in finished.stdout + finished.stderr
