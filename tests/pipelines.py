"""Pipelines only the tests use. Each records its executions in Redis, so a test can count
how often a pipeline really ran, whichever process ran it, and when.

Every execution gets a token of its own and stamps, on the Redis server's clock (so a worker
whose clock is off does not matter), when it started, that it is still alive (after every
step of at most STEP_SECONDS) and when it ended. A test reads the stamps back with
`executions()` and measures whether two executions of one run ever overlapped.

The records go to RUNWAY_TEST_RECORDER_URL when it is set (the test's own Redis, which the
test harness hands every process it starts), else to the process's REDIS_URL: a scenario
may point a worker's broker at a proxy or another Redis, but never its records.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

import redis

from app.errors import PermanentError
from app.pipelines.context import RunContext
from app.pipelines.registry import pipeline
from app.settings import get_settings

RECORDER_URL_VARIABLE = "RUNWAY_TEST_RECORDER_URL"
STEP_SECONDS = 0.1

# KEYS: the run's set of tokens, the execution's hash. ARGV: token, stamp, attempt, local clock.
# Stamps are "seconds.microseconds" on the server's clock; `start` also keeps the attempt and
# how far the executing process's own clock is from the server's.
_STAMP = """
local now = redis.call('TIME')
local stamp = now[1] .. '.' .. string.format('%06d', tonumber(now[2]))
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], stamp)
if ARGV[2] == 'start' then
  local skew = tonumber(ARGV[4]) - tonumber(stamp)
  redis.call('HSET', KEYS[2], 'attempt', ARGV[3], 'skew', tostring(skew))
end
return stamp
"""


def _key(kind: str, name: object) -> str:
    return f"{get_settings().queue_prefix}:test:{kind}:{name}"


def executions_key(run_id: object) -> str:
    """How many times the run's pipeline started."""
    return _key("executions", run_id)


def finished_key(run_id: object) -> str:
    """How many times the run's pipeline returned normally."""
    return _key("finished", run_id)


def tokens_key(run_id: object) -> str:
    return _key("tokens", run_id)


def execution_key(token: str) -> str:
    return _key("execution", token)


@cache
def _client(url: str, pid: int) -> redis.Redis:
    """One client per process (a forked pool child makes its own)."""
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def recorder() -> redis.Redis:
    url = os.environ.get(RECORDER_URL_VARIABLE) or get_settings().redis_url
    return _client(url, os.getpid())


class Recording:
    """One execution of a run, stamped as it goes."""

    def __init__(self, ctx: RunContext) -> None:
        self.client = recorder()
        self.run_id = ctx.run_id
        self.token = uuid.uuid4().hex
        self.script = self.client.register_script(_STAMP)
        self.client.incr(executions_key(self.run_id))
        self.stamp("start", ctx.attempt)

    def stamp(self, what: str, attempt: int = 0) -> None:
        keys = [tokens_key(self.run_id), execution_key(self.token)]
        self.script(keys=keys, args=[self.token, what, attempt, repr(time.time())])

    def finished(self) -> None:
        self.client.incr(finished_key(self.run_id))


def _work(ctx: RunContext, seconds: float, ignore_cancel: bool, recording: Recording) -> None:
    """Work for `seconds` in steps of at most STEP_SECONDS, stamping `alive` after each.
    Cancellable steps raise `Cancelled` once the run is cancelled; ignored ones never do."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if ignore_cancel:
            time.sleep(min(STEP_SECONDS, left))
        else:
            ctx.sleep(min(STEP_SECONDS, left))
        recording.stamp("alive")


def recorded(ctx: RunContext, default_seconds: float) -> Recording:
    """Run the common body of the recorded pipelines: start, work, end."""
    recording = Recording(ctx)
    try:
        seconds = float(ctx.params.get("seconds", default_seconds))
        _work(ctx, seconds, bool(ctx.params.get("ignore_cancel", False)), recording)
    finally:
        recording.stamp("end")
    return recording


@pipeline("test.count")
def count(ctx: RunContext) -> dict[str, Any]:
    """Works `seconds` (cancellable) so duplicates overlap; returns how often it started."""
    recording = recorded(ctx, 0.5)
    recording.finished()
    return {"executions": int(recording.client.get(executions_key(ctx.run_id)) or 0)}


@pipeline("test.work")
def work(ctx: RunContext) -> dict[str, Any]:
    """Works `seconds`; with `ignore_cancel` it never notices a cancel. A run whose pipeline
    finished twice was completed twice."""
    recorded(ctx, 0.5).finished()
    return {"attempt": ctx.attempt}


@pipeline("test.flaky")
def flaky(ctx: RunContext) -> dict[str, Any]:
    """Works `seconds`, then fails its first `fail_times` attempts (retryable errors)."""
    recording = recorded(ctx, 0.2)
    if ctx.attempt <= int(ctx.params.get("fail_times", 1)):
        raise RuntimeError(f"test.flaky: attempt {ctx.attempt} fails as planned")
    recording.finished()
    return {"attempt": ctx.attempt}


# The table `test.record` writes to; a test creates it (tests/faults/helpers.py) in its own
# database, which no other test session can touch (they share, and flush, the Redis one).
RECORD_TABLE = "test_flow_record"
_RECORD = f"""
INSERT INTO {RECORD_TABLE} (token, label, run_id, attempt, start, finish)
VALUES (%(token)s, %(label)s, %(run_id)s, %(attempt)s, %(start)s, %(finish)s)
ON CONFLICT (token) DO UPDATE SET finish = excluded.finish
"""


def _write_record(entry: dict[str, Any]) -> None:
    from app import db

    with db.hot_connection() as conn:
        conn.execute(_RECORD, entry)


@pipeline("test.record")
def record(ctx: RunContext) -> dict[str, Any]:
    """Works `seconds` (`retry_seconds` on attempts after the first, if given), and writes
    when it started and ended, on the wall clock (`time.time()`: every process of a test runs
    on this machine), as a row of RECORD_TABLE labelled with the param `record`: written at
    the start (`finish` null, so an execution whose worker is killed still shows) and again
    at the end. Also stamps like the other recorded pipelines (`Scenario.settle`)."""
    start = time.time()
    entry: dict[str, Any] = {
        "token": uuid.uuid4().hex,
        "label": str(ctx.params["record"]),
        "run_id": ctx.run_id,
        "attempt": ctx.attempt,
        "start": start,
        "finish": None,
    }
    _write_record(entry)
    seconds = float(ctx.params.get("seconds", 0.5))
    if ctx.attempt > 1 and "retry_seconds" in ctx.params:
        seconds = float(ctx.params["retry_seconds"])
    recording = Recording(ctx)
    try:
        _work(ctx, seconds, bool(ctx.params.get("ignore_cancel", False)), recording)
    finally:
        recording.stamp("end")
    entry["finish"] = time.time()
    _write_record(entry)
    recording.finished()
    return {"attempt": ctx.attempt}


@pipeline("test.unserialisable")
def unserialisable(ctx: RunContext) -> dict[str, Any]:
    return {"when": object()}


@pipeline("test.surrogate_result")
def surrogate_result(ctx: RunContext) -> dict[str, Any]:
    """A result with a lone surrogate: valid Python, not UTF-8, not storable in Postgres."""
    recorded(ctx, 0).finished()
    return {"text": "\udcff"}


@pipeline("test.surrogate_error")
def surrogate_error(ctx: RunContext) -> dict[str, Any]:
    """Fails for good, with a message that cannot be encoded as UTF-8."""
    recorded(ctx, 0)
    raise PermanentError("cannot go on: \udcff")


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"child": value}
    return value


@pipeline("test.deep_result")
def deep_result(ctx: RunContext) -> dict[str, Any]:
    """A result nested `depth` (400) levels deep."""
    recorded(ctx, 0).finished()
    return nested(int(ctx.params.get("depth", 400)))


@pipeline("test.suicide")
def suicide(ctx: RunContext) -> dict[str, Any]:
    """A poison run: kills the process that runs it, every time."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)
    return {}


@pipeline("test.slow", soft_time_limit=1, time_limit=3)
def slow(ctx: RunContext) -> dict[str, Any]:
    """Over its soft limit after 1 s; `stubborn` swallows the interruption until killed."""
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


@dataclass(frozen=True)
class Execution:
    """One execution of a run, as recorded: server-clock seconds."""

    token: str
    attempt: int
    start: float
    last: float  # the last sign of life: the end stamp, or the last `alive`
    ended: bool
    skew: float  # the executing process's clock minus the Redis server's, at its start


def executions(client: redis.Redis, run_id: object) -> list[Execution]:
    """The recorded executions of a run, in the order they started."""
    found = []
    for raw in client.smembers(tokens_key(run_id)):
        token = raw.decode() if isinstance(raw, bytes) else str(raw)
        fields = {
            (key.decode() if isinstance(key, bytes) else key): float(value)
            for key, value in client.hgetall(execution_key(token)).items()
        }
        if "start" not in fields:
            continue
        stamps = [fields[name] for name in ("start", "alive", "end") if name in fields]
        found.append(
            Execution(
                token,
                int(fields.get("attempt", 0)),
                fields["start"],
                max(stamps),
                "end" in fields,
                fields.get("skew", 0.0),
            )
        )
    return sorted(found, key=lambda execution: execution.start)


def most_at_once(runs: list[Execution]) -> int:
    """The most executions alive at one moment (sweep line over [start, last]); intervals
    that only touch do not overlap."""
    events = sorted([(e.start, 1) for e in runs] + [(e.last, -1) for e in runs])
    alive = most = 0
    for _, change in events:  # at equal times -1 sorts first: an end before a start
        alive += change
        most = max(most, alive)
    return most
