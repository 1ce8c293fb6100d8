"""One attempt of a run: claim the row, run the pipeline, write how it ended. Nothing else.

Three writes on the hot path, each one conditional UPDATE in autocommit: the claim (which
returns all the attempt needs), heartbeats (batched per process, only for long runs), and
the final write. The final write is retried for as long as Postgres is unreachable: the
sweep rescues no run until Postgres has been up for a whole lease (see runs/store.py), so
finished work is not thrown away by an outage, however long.
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

from app import db, logs, monitoring
from app.errors import Cancelled, PermanentError
from app.jsonvalues import storable_json, storable_text
from app.limits import gate
from app.pipelines import registry
from app.pipelines.context import RunContext
from app.runs import aftermath, dispatch, store
from app.runs.outcome import Outcome, RetryPolicy
from app.runs.supervisor import Supervisor
from app.runs.supervisor import clock as supervisor_clock
from app.settings import get_settings
from app.states import RunStatus

log = logging.getLogger(__name__)
T = TypeVar("T")

# Seconds to wait between tries of a hot-path write while Postgres is unreachable.
DATABASE_RETRY_DELAYS = (0.2, 0.5, 1, 2, 4, 8)
# The final write tries again at least this often, for as long as it takes: after an outage
# it must land within the lease that the sweep grants every run once Postgres is back.
FINAL_WRITE_RETRY_SECONDS = 1.0


@cache
def supervisor() -> Supervisor:
    settings = get_settings()
    return Supervisor(
        settings.heartbeat_seconds, settings.cancel_grace_seconds, settings.lease_seconds
    )


@cache
def retry_policy() -> RetryPolicy:
    settings = get_settings()
    return RetryPolicy(settings.retry_base_seconds, settings.retry_max_seconds)


def execute(run_id: UUID, worker: str, gated: bool = False) -> RunStatus | None:
    """Run one attempt. Returns how it ended, or None when the run was not ours to run.

    `gated`: the publisher knew the run must be claimed through the gate (app/limits), which
    saves the plain claim's refusal; a run that turns out gated goes there anyway."""
    sent = supervisor_clock()

    def claim(conn: store.HotConnection) -> store.ClaimAnswer:
        nonlocal sent
        sent = supervisor_clock()  # the lease counts from here, at the latest
        answer = None if gated else store.claim(conn, run_id, worker)
        if answer is None or answer.gate:
            answer = _gated_claim(conn, run_id, worker)
        return answer

    answer = _with_database(claim)
    claimed = answer.claimed
    if claimed is None:
        _not_claimed(run_id, answer.wait_seconds)
        return None
    _note(claimed, "started")
    context = _context(claimed)

    def terminate(how: str) -> None:
        """The supervisor ends the attempt, then kills this process at once: nothing else
        may run in between. The redelivered message re-publishes a retry when its backoff
        ends; the sweep publishes a run queued behind this one."""
        _write(claimed, _terminated(context, how))

    limits = registry.limits(claimed.pipeline, get_settings())
    tracking = supervisor().track(
        run_id, claimed.attempt, context.cancel_event, limits, terminate, renewed_at=sent
    )
    with tracking as ticket:
        outcome = attempt(context)
    if ticket.taken:
        _note(claimed, "was ended by its supervisor", None, supervisor_clock() - sent)
        return None
    outcome = _unless_lease_lost(context, outcome, ticket.stop_reason)
    return _conclude(claimed, outcome, supervisor_clock() - sent)


def _gated_claim(conn: store.HotConnection, run_id: UUID, worker: str) -> store.ClaimAnswer:
    answer = gate.claim(conn, run_id, worker)
    if answer.waiting_for is not None:
        log.info(
            "run %s waits: %s",
            run_id,
            answer.waiting_for,
            extra={"execution_id": str(run_id), "waiting_for": answer.waiting_for},
        )
    claimed = None if answer.row is None else store.Claimed(**answer.row)
    return store.ClaimAnswer(claimed, answer.wait_seconds)


def _not_claimed(run_id: UUID, wait_seconds: float | None) -> None:
    """A message that came too early (the publisher's clock, or a duplicate, ran ahead of
    the run's backoff) goes back with the time left; any other refusal is final."""
    if wait_seconds is not None:
        log.info(
            "run %s is backing off for %.1fs more: publishing it again",
            run_id,
            wait_seconds,
            extra={"execution_id": str(run_id)},
        )
        if dispatch.publish(run_id, countdown=wait_seconds):
            monitoring.count_republished([run_id])
        return
    log.info(
        "run %s not claimable (duplicate delivery, cancelled, queued or finished)",
        run_id,
        extra={"execution_id": str(run_id)},
    )


def _conclude(claimed: store.Claimed, outcome: Outcome, duration: float) -> RunStatus | None:
    """Write how the attempt ended (fenced by its attempt number), then set its consequences
    going. An outcome Postgres refuses to store fails the run instead, with the reason."""

    finished = _write(claimed, outcome)
    if finished is None:
        _note(claimed, "was taken over; outcome dropped", None, duration)
        return None
    aftermath.follow_up(_ended(claimed, finished.status), finished.released, outcome.retry_in)
    _note(claimed, f"ended {finished.status}", finished.status, duration)
    return finished.status


def _ended(claimed: store.Claimed, status: RunStatus) -> aftermath.Ended:
    return aftermath.Ended(
        claimed.id,
        status,
        claimed.run_type,
        claimed.stream_id,
        claimed.priority,
        claimed.gated,
        claimed.workspace_id,
        claimed.limit_keys,
    )


def _note(
    claimed: store.Claimed,
    event: str,
    status: RunStatus | None = RunStatus.RUNNING,
    duration: float | None = None,
) -> None:
    """A lifecycle line (no status: the row is no longer this attempt's), built only when
    INFO is logged: a worker at WARNING pays nothing for it on every run."""
    if not log.isEnabledFor(logging.INFO):
        return
    fields = logs.lifecycle(
        claimed.id, claimed.stream_id, claimed.run_type, claimed.attempt, status, duration
    )
    log.info("run %s attempt %s %s", claimed.id, claimed.attempt, event, extra=fields)


def _write(claimed: store.Claimed, outcome: Outcome) -> store.Finished | None:
    """The attempt's final write, fenced by its number; None: no longer this attempt's."""

    def finish(conn: store.HotConnection) -> store.Finished | None:
        try:
            return store.finish(conn, claimed.id, claimed.attempt, outcome)
        except (psycopg.DataError, psycopg.OperationalError, UnicodeError) as error:
            if isinstance(error, psycopg.OperationalError) and connection_lost(error):
                raise
            log.error("run %s: its outcome cannot be stored: %s", claimed.id, error)
            return store.finish(conn, claimed.id, claimed.attempt, _unstorable(outcome, error))

    return _with_database(finish, forever=True)


def _unless_lease_lost(context: RunContext, outcome: Outcome, stop_reason: str | None) -> Outcome:
    """A pipeline that stopped because its lease was lost was not cancelled by anyone: the
    attempt is retried (if its row is still this attempt's at all)."""
    if outcome.status is not RunStatus.CANCELLED or stop_reason not in ("lost", "lease"):
        return outcome
    error = RuntimeError("the attempt was stopped: its worker could not keep its lease")
    return retry_policy().decide(error, "lease_lost", context.attempt, context.max_attempts)


def _unstorable(outcome: Outcome, error: Exception) -> Outcome:
    reason = storable_text(f"the attempt ended {outcome.status} but its outcome cannot be stored")
    detail = storable_text(f"{type(error).__name__}: {error}")
    return Outcome(RunStatus.FAILED, error=f"{reason} ({detail})", error_type="unstorable_outcome")


def _terminated(context: RunContext, how: str) -> Outcome:
    if how == "cancelled":
        return Outcome.cancelled("cancelled on request; the run ignored it and was terminated")
    error = TimeoutError("the run exceeded its hard time limit and was terminated")
    return retry_policy().decide(error, "timeout", context.attempt, context.max_attempts)


def attempt(context: RunContext) -> Outcome:
    """Call the pipeline and turn whatever happened into an Outcome."""
    try:
        with supervisor().interruptible():
            result = registry.get(context.pipeline)(context)
        return Outcome.completed(_as_result(result))
    except Cancelled:
        return Outcome.cancelled()
    except SoftTimeLimitExceeded:
        error: BaseException = TimeoutError("the run exceeded its time limit")
        error_type = "timeout"
    except Exception as exc:
        error, error_type = exc, storable_text(type(exc).__name__)
        log.warning(
            "run %s attempt %s raised %s: %s",
            context.run_id,
            context.attempt,
            error_type,
            exc,
            extra={"execution_id": str(context.run_id)},
        )
    if context.cancelled:
        return Outcome.cancelled()
    return retry_policy().decide(error, error_type, context.attempt, context.max_attempts)


def _with_database(write: Callable[[store.HotConnection], T], forever: bool = False) -> T:
    """Run a hot-path write, trying again with a fresh connection while Postgres is away:
    for about 16 s, or `forever` (the final write: finished work is worth the wait).

    Safe because every write is conditional: one that did commit before its answer was lost
    finds the row already moved on and returns None.
    """
    delays = iter(DATABASE_RETRY_DELAYS)
    while True:
        try:
            with db.hot_connection() as conn:
                return write(conn)
        except psycopg.OperationalError as error:
            delay = next(delays, FINAL_WRITE_RETRY_SECONDS if forever else None)
            if delay is None or not connection_lost(error):
                raise
            if forever:
                delay = min(delay, FINAL_WRITE_RETRY_SECONDS)
            log.warning("database unavailable, trying again in %ss: %s", delay, error)
            time.sleep(delay)


def connection_lost(error: psycopg.OperationalError) -> bool:
    """Postgres could not be reached, or went away: worth trying again. Other operational
    errors (a value over a size limit, out of memory) will fail the same way every time."""
    state = error.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def _as_result(result: Mapping[str, Any] | None) -> dict[str, Any]:
    if result is not None and not isinstance(result, Mapping):
        raise PermanentError(f"the pipeline returned a {type(result).__name__}, not a dict")
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
    progress = {"percent": round(percent, 2), "message": storable_text(str(message))}
    sent = supervisor_clock()
    try:
        with db.hot_connection() as conn:
            owned, cancel_age = store.set_progress(conn, claimed.id, claimed.attempt, progress)
    except psycopg.OperationalError as error:
        log.warning("progress of run %s not recorded: %s", claimed.id, error)
        return
    supervisor().notice(claimed.id, owned, cancel_age, sent)
