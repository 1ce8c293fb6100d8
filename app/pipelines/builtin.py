"""Built-in pipelines for smoke tests, demos and benchmarks."""

from __future__ import annotations

import time
from typing import Any

from app.errors import PermanentError
from app.pipelines import params
from app.pipelines.context import RunContext
from app.pipelines.registry import pipeline


@pipeline("builtin.noop")
def noop(ctx: RunContext) -> dict[str, Any]:
    return {}


@pipeline("builtin.sleep")
def sleep(ctx: RunContext) -> dict[str, Any]:
    """Sleeps `seconds`, reporting progress; honours cancel unless `ignore_cancel` is true."""
    seconds = params.number(ctx.params, "seconds", 1.0)
    ignore_cancel = bool(ctx.params.get("ignore_cancel", False))
    steps = max(1, min(100, int(seconds * 2)))
    for step in range(steps):
        if ignore_cancel:
            time.sleep(seconds / steps)
        else:
            ctx.sleep(seconds / steps)
        ctx.progress(100 * (step + 1) / steps, f"slept {seconds * (step + 1) / steps:.1f}s")
    return {"slept_seconds": seconds}


@pipeline("builtin.flaky")
def flaky(ctx: RunContext) -> dict[str, Any]:
    """Fails the first `fail_times` attempts with a retryable error, then succeeds."""
    fail_times = params.integer(ctx.params, "fail_times", 1)
    if ctx.attempt <= fail_times:
        raise RuntimeError(f"flaky: attempt {ctx.attempt} fails ({fail_times} planned failures)")
    return {"succeeded_on_attempt": ctx.attempt}


@pipeline("builtin.fail")
def fail(ctx: RunContext) -> dict[str, Any]:
    raise PermanentError(params.text(ctx.params, "message", "builtin.fail always fails"))
