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
