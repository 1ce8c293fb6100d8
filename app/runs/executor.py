"""One attempt of a run: claim the row, run the pipeline, write how it ended. Nothing else."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from functools import cache
from typing import Any
from uuid import UUID

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.engine import Row
from sqlalchemy.exc import SQLAlchemyError

from app import db
from app.errors import Cancelled, PermanentError
from app.pipelines import registry
from app.pipelines.context import RunContext
from app.runs import dispatch, store
from app.runs.heartbeat import Heartbeats
from app.runs.outcome import Outcome, RetryPolicy
from app.settings import get_settings
from app.states import RunStatus

log = logging.getLogger(__name__)


@cache
def heartbeats() -> Heartbeats:
    return Heartbeats(get_settings().heartbeat_seconds)


@cache
def retry_policy() -> RetryPolicy:
    settings = get_settings()
    return RetryPolicy(settings.retry_base_seconds, settings.retry_max_seconds)


def execute(run_id: UUID, worker: str) -> RunStatus | None:
    """Run one attempt. Returns how it ended, or None when the run was not ours to run."""
    with db.unit_of_work() as conn:
        claimed = store.claim(conn, run_id, worker)
    if claimed is None:
        log.info("run %s not claimable (duplicate delivery, cancelled or finished)", run_id)
        return None
    context = _context(claimed)
    with heartbeats().track(run_id, claimed.attempt, context.cancel_event):
        outcome = attempt(context)
    with db.unit_of_work() as conn:
        status = store.finish(conn, run_id, claimed.attempt, outcome)
    if status is RunStatus.RETRYING:
        dispatch.publish(run_id, countdown=outcome.retry_in)
    log.info("run %s attempt %s ended %s", run_id, claimed.attempt, status or "stale")
    return status


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


def _as_result(result: Mapping[str, Any] | None) -> dict[str, Any]:
    value = dict(result or {})
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise PermanentError(f"the pipeline returned a result that is not JSON: {exc}") from None
    return value


def _context(claimed: Row[Any]) -> RunContext:
    cancel_event = threading.Event()
    return RunContext(
        run_id=claimed.id,
        pipeline=claimed.pipeline,
        run_type=claimed.run_type,
        attempt=claimed.attempt,
        max_attempts=claimed.max_attempts,
        stream_id=claimed.stream_id,
        stream_name=claimed.stream_name,
        params=dict(claimed.params),
        report_progress=lambda percent, message: _progress(
            claimed.id, claimed.attempt, percent, message, cancel_event
        ),
        cancel_event=cancel_event,
    )


def _progress(
    run_id: UUID, attempt_no: int, percent: float, message: str, cancel_event: threading.Event
) -> None:
    try:
        with db.unit_of_work() as conn:
            cancel = store.set_progress(
                conn, run_id, attempt_no, {"percent": round(percent, 2), "message": message}
            )
    except SQLAlchemyError as error:
        log.warning("progress of run %s not recorded: %s", run_id, error)
        return
    if cancel is None or cancel:
        cancel_event.set()
