"""One attempt of a run: claim the row, run the pipeline, write how it ended. Nothing else.

Three writes on the hot path, each one conditional UPDATE in autocommit: the claim (which
returns all the attempt needs), heartbeats (batched per process, only for long runs), and
the final write. The final write is retried while Postgres is unreachable, so a database
restart near the end of a long run does not throw the run's work away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from celery.exceptions import SoftTimeLimitExceeded

from app import db
from app.errors import Cancelled, PermanentError
from app.jsonvalues import storable_json
from app.pipelines import registry
from app.pipelines.context import RunContext
from app.runs import aftermath, store
from app.runs.outcome import Outcome, RetryPolicy
from app.runs.supervisor import Supervisor
from app.settings import get_settings
from app.states import RunStatus

log = logging.getLogger(__name__)
T = TypeVar("T")

# Seconds to wait between tries of a hot-path write while Postgres is unreachable.
DATABASE_RETRY_DELAYS = (0.2, 0.5, 1, 2, 4, 8)


@cache
def supervisor() -> Supervisor:
    settings = get_settings()
    return Supervisor(settings.heartbeat_seconds, settings.cancel_grace_seconds)


@cache
def retry_policy() -> RetryPolicy:
    settings = get_settings()
    return RetryPolicy(settings.retry_base_seconds, settings.retry_max_seconds)


def execute(run_id: UUID, worker: str) -> RunStatus | None:
    """Run one attempt. Returns how it ended, or None when the run was not ours to run."""
    claimed = _with_database(lambda conn: store.claim(conn, run_id, worker))
    if claimed is None:
        log.info("run %s not claimable (duplicate delivery, cancelled or finished)", run_id)
        return None
    context = _context(claimed)

    def terminate(how: str) -> None:
        _conclude(claimed, _terminated(context, how))

    limits = registry.limits(claimed.pipeline, get_settings())
    with supervisor().track(run_id, claimed.attempt, context.cancel_event, limits, terminate):
        outcome = attempt(context)
    return _conclude(claimed, outcome)


def _conclude(claimed: store.Claimed, outcome: Outcome) -> RunStatus | None:
    """Write how the attempt ended (fenced by its number), then set its consequences going."""
    finished = _with_database(lambda conn: store.finish(conn, claimed.id, claimed.attempt, outcome))
    if finished is None:
        log.info("run %s attempt %s was taken over; outcome dropped", claimed.id, claimed.attempt)
        return None
    aftermath.follow_up(
        claimed.id,
        finished.status,
        claimed.run_type,
        claimed.stream_id,
        finished.released,
        outcome.retry_in,
    )
    log.info("run %s attempt %s ended %s", claimed.id, claimed.attempt, finished.status)
    return finished.status


def _terminated(context: RunContext, how: str) -> Outcome:
    if how == "cancelled":
        return Outcome.cancelled("cancelled on request; the run ignored it and was terminated")
    error = TimeoutError("the run exceeded its hard time limit and was terminated")
    return retry_policy().decide(error, "timeout", context.attempt, context.max_attempts)


def attempt(context: RunContext) -> Outcome:
    """Call the pipeline and turn whatever happened into an Outcome."""
    try:
        result = registry.get(context.pipeline)(context)
        return Outcome.completed(_as_result(result))
    except Cancelled:
        return Outcome.cancelled()
    except SoftTimeLimitExceeded:
        error: BaseException = TimeoutError("the run exceeded its time limit")
        error_type = "timeout"
    except Exception as exc:
        error, error_type = exc, type(exc).__name__
        log.warning(
            "run %s attempt %s raised %s: %s", context.run_id, context.attempt, error_type, exc
        )
    if context.cancelled:
        return Outcome.cancelled()
    return retry_policy().decide(error, error_type, context.attempt, context.max_attempts)


def _with_database(write: Callable[[store.HotConnection], T]) -> T:
    """Run a hot-path write, trying again with a fresh connection while Postgres is away.

    Safe because every write is conditional: one that did commit before its answer was lost
    finds the row already moved on and returns None.
    """
    for delay in (*DATABASE_RETRY_DELAYS, None):
        try:
            with db.hot_connection() as conn:
                return write(conn)
        except psycopg.OperationalError as error:
            if delay is None:
                raise
            log.warning("database unavailable, trying again in %ss: %s", delay, error)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _as_result(result: Mapping[str, Any] | None) -> dict[str, Any]:
    value = dict(result or {})
    problem = storable_json(value)
    if problem is not None:
        raise PermanentError(f"the pipeline's result is {problem}")
    return value


def _context(claimed: store.Claimed) -> RunContext:
    cancel_event = threading.Event()

    def report(percent: float, message: str) -> None:
        _progress(claimed, percent, message)

    return RunContext(
        run_id=claimed.id,
        pipeline=claimed.pipeline,
        run_type=claimed.run_type,
        attempt=claimed.attempt,
        max_attempts=claimed.max_attempts,
        stream_id=claimed.stream_id,
        stream_name=claimed.stream_name,
        params=dict(claimed.params),
        report_progress=report,
        cancel_event=cancel_event,
    )


def _progress(claimed: store.Claimed, percent: float, message: str) -> None:
    progress = {"percent": round(percent, 2), "message": message}
    try:
        with db.hot_connection() as conn:
            owned, cancel_age = store.set_progress(conn, claimed.id, claimed.attempt, progress)
    except psycopg.OperationalError as error:
        log.warning("progress of run %s not recorded: %s", claimed.id, error)
        return
    supervisor().notice(claimed.id, owned, cancel_age)
