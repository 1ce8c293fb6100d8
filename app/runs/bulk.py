"""Bulk cancel and retry: the runs a filter selects, set-based, in one workspace.

A filter is required: an empty one is refused, never taken for "everything".

Cancel is set-based, in batches of CANCEL_BATCH runs by id, each one conditional UPDATE in
its own transaction: waiting runs (pending, retrying) end `cancelled` at once, running ones
are asked to stop (they end `cancelled` within the grace, as a single cancel's do). One
statement for both kinds, so a run that moves from running to retrying between two
statements cannot slip through both. The follow-ups of the cancelled runs (the runs queued
behind them, the limit slots they held) come once the last batch committed. A matching run
created while the call goes on may or may not be cancelled.

Retry makes a new run, with `retry_of`, for each matching failed or cancelled run that has
not been retried before (so pressing twice retries nothing twice), oldest first, at most
MAX_RETRIES per call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.errors import DeadlockDetected
from sqlalchemy.exc import OperationalError

from app import db
from app.errors import InvalidInput
from app.limits import gate
from app.runs import bulk_store, dispatch, starting, store
from app.runs.service import retry_values
from app.states import LIVE, RunStatus, RunType

MAX_RETRIES = 1000
# Bulk cancel goes in batches of this many runs, each its own transaction: no lock is held
# longer than one batch (a heartbeat of a matching run waits at most that long).
CANCEL_BATCH = 1000
DEADLOCK_TRIES = 3


@dataclass(frozen=True)
class Selection:
    """Which of a workspace's runs: every field given must match."""

    stream_id: UUID | None = None
    statuses: tuple[RunStatus, ...] = ()
    run_type: RunType | None = None
    created_before: datetime | None = None
    completed_after: datetime | None = None

    @property
    def empty(self) -> bool:
        return self == Selection()


@dataclass(frozen=True)
class Cancelled:
    cancelled: int  # waiting runs, cancelled at once
    cancel_requested: int  # running runs, asked to stop


@dataclass(frozen=True)
class Retried:
    created: int
    more: bool  # more runs match: call again


def cancel(workspace_id: UUID, selection: Selection) -> Cancelled:
    if selection.empty:
        raise InvalidInput(
            "", "give at least one filter: stream_id, status, run_type or created_before"
        )
    if not set(selection.statuses) <= set(LIVE):
        raise InvalidInput("status", "only pending, running or retrying runs can be cancelled")
    cancelled = asked = 0
    after: UUID | None = None
    ended = _Ended()
    try:
        while True:
            touched = _cancel_batch(workspace_id, selection, after)
            for run in touched:
                if run.status == RunStatus.CANCELLED:
                    cancelled += 1
                    ended.add(run)
                else:
                    asked += 1
            if len(touched) < CANCEL_BATCH:
                return Cancelled(cancelled, asked)
            after = max(run.id for run in touched)
    finally:
        # Once, after the last batch: a follow-up between batches could start a run that a
        # later batch was to cancel (a queued run of the stream, a parked one of the key).
        _follow_up(workspace_id, ended)


@dataclass
class _Ended:
    """What the runs a bulk cancel ended leave to do: their streams' queued runs to start,
    and, if any held limit room, the keys to release."""

    streams: set[UUID] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    gated: bool = False

    def add(self, run: Any) -> None:
        self.streams.add(run.stream_id)
        if run.gated:
            self.gated = True
            self.keys.update(run.limit_keys)


def _cancel_batch(workspace_id: UUID, selection: Selection, after: UUID | None) -> list[Any]:
    """One batch, in its own transaction; tried again if Postgres broke a deadlock with it
    (a heartbeat or a release locking some of the same runs in another order)."""
    for attempt in range(DEADLOCK_TRIES):
        try:
            with db.unit_of_work() as conn:
                return list(bulk_store.cancel(conn, workspace_id, selection, after, CANCEL_BATCH))
        except OperationalError as error:
            if not isinstance(error.orig, DeadlockDetected) or attempt == DEADLOCK_TRIES - 1:
                raise
    raise AssertionError("unreachable")


def _follow_up(workspace_id: UUID, ended: _Ended) -> None:
    """What each cancelled run would have set going at its end: the oldest run queued behind
    it on its stream, and the limit slots it may have held."""
    if ended.streams:
        with db.unit_of_work() as conn:
            queued = store.next_queued_of(conn, list(ended.streams))
        dispatch.publish_many(queued)
    if ended.gated:
        gate.release(workspace_id, sorted(ended.keys))


def retry(workspace_id: UUID, selection: Selection) -> Retried:
    if not selection.statuses or not set(selection.statuses) <= {
        RunStatus.FAILED,
        RunStatus.CANCELLED,
    }:
        raise InvalidInput("status", "must be failed or cancelled")
    with db.unit_of_work() as conn:
        bulk_store.lock_retries(conn, workspace_id)
        originals = bulk_store.retryable(conn, workspace_id, selection, MAX_RETRIES + 1)
        capped = workspace_id in gate.capped_workspaces(conn, [workspace_id])
        values = [retry_values(run, capped) for run in originals[:MAX_RETRIES]]
        created = bulk_store.insert_runs(conn, values)
    starting.start([starting.Created.of(run._mapping) for run in created])
    return Retried(len(created), len(originals) > MAX_RETRIES)
