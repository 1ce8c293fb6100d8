"""schemathesis, with all its checks, finds nothing wrong with the API against its own
OpenAPI document: every status documented, every constraint stated, every valid request
accepted. It runs as a user would run it (`st run ... --checks all`) against a real server,
with a fixed seed and a bounded number of examples per operation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.browser import live_api

__all__ = ["live_api"]  # fixtures

ST = Path(sys.executable).parent / "st"
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_schemathesis_finds_nothing(live_api: str, auth: dict[str, str]) -> None:
    seed_resources(live_api, auth)
    command = [
        str(ST), "--config-file", str(ROOT / "schemathesis.toml"),
        "run", f"{live_api}/openapi.json",
        "--checks", "all", "--exclude-checks", "use_after_free",
        "--max-examples", "25", "--seed", "20260101",
        "--generation-deterministic", "--workers", "1",
        "--header", f"Authorization: {auth['Authorization']}", "--no-color",
    ]  # fmt: skip
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=600, cwd=ROOT
    )

    assert done.returncode == 0, done.stdout[-20_000:] + done.stderr[-3000:]
    assert "No issues found" in done.stdout or "passed" in done.stdout, done.stdout[-3000:]


def seed_resources(origin: str, auth: dict[str, str]) -> dict[str, Any]:
    """A stream and a run, so that reads of real ids are exercised too."""
    body = {"name": "seed", "pipeline": "builtin.noop", "schedule_config": None}
    stream = httpx.post(f"{origin}/streams", json=body, headers=auth).json()
    run = httpx.post(f"{origin}/runs", json={"stream_id": stream["id"]}, headers=auth)
    assert run.status_code == 202, run.text
    return stream
