"""Pipelines only the tests use. Each records its executions in Redis, so a test can count
how often a pipeline really ran, whichever process ran it."""

from __future__ import annotations

from typing import Any

import redis

from app.pipelines.context import RunContext
from app.pipelines.registry import pipeline
from app.settings import get_settings


def executions_key(run_id: object) -> str:
    return f"{get_settings().queue_prefix}:test:executions:{run_id}"


def _count(ctx: RunContext) -> int:
    client = redis.Redis.from_url(get_settings().redis_url)
    try:
        return int(client.incr(executions_key(ctx.run_id)))
    finally:
        client.close()


@pipeline("test.count")
def count(ctx: RunContext) -> dict[str, Any]:
    """Counts its executions, then sleeps `seconds` (cancellable) so duplicates overlap."""
    executions = _count(ctx)
    ctx.sleep(float(ctx.params.get("seconds", 0.5)))
    return {"executions": executions}


@pipeline("test.unserialisable")
def unserialisable(ctx: RunContext) -> dict[str, Any]:
    return {"when": object()}


def finished_key(run_id: object) -> str:
    return f"{get_settings().queue_prefix}:test:finished:{run_id}"


@pipeline("test.work")
def work(ctx: RunContext) -> dict[str, Any]:
    """Counts starts and finishes separately: a run that finished twice was completed twice."""
    client = redis.Redis.from_url(get_settings().redis_url)
    try:
        client.incr(executions_key(ctx.run_id))
        ctx.sleep(float(ctx.params.get("seconds", 0.5)))
        client.incr(finished_key(ctx.run_id))
    finally:
        client.close()
    return {"attempt": ctx.attempt}


@pipeline("test.suicide")
def suicide(ctx: RunContext) -> dict[str, Any]:
    """A poison run: kills the process that runs it, every time."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)
    return {}


@pipeline("test.slow", soft_time_limit=1, time_limit=3)
def slow(ctx: RunContext) -> dict[str, Any]:
    """Over its soft limit after 1 s; `stubborn` swallows the interruption until killed."""
    import time

    from celery.exceptions import SoftTimeLimitExceeded

    deadline = time.monotonic() + float(ctx.params.get("seconds", 10))
    while time.monotonic() < deadline:
        try:
            time.sleep(0.1)
        except SoftTimeLimitExceeded:
            if not ctx.params.get("stubborn"):
                raise
    return {}


@pipeline("test.nan")
def not_a_number(ctx: RunContext) -> dict[str, Any]:
    return {"score": float("nan")}
