"""Bulk cancel and retry: the runs a filter selects, set-based, in one workspace.

A filter is required: an empty one is refused, never taken for "everything".

Cancel is one conditional UPDATE over the selection: waiting runs (pending, retrying) end
`cancelled` at once, running ones are asked to stop (they end `cancelled` within the grace,
as a single cancel's do). One statement rather than one per kind, so a run that moves from
running to retrying between two statements cannot slip through both. The follow-ups of the
runs cancelled (the runs queued behind them, the limit slots they held) come after commit.

Retry makes a new run, with `retry_of`, for each matching failed or cancelled run that has
not been retried before (so pressing twice retries nothing twice), oldest first, at most
MAX_RETRIES per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from app import db
from app.errors import InvalidInput
from app.limits import gate
from app.runs import bulk_store, dispatch, store
from app.runs.job import Job
from app.runs.service import retry_values
from app.states import LIVE, RunStatus, RunType

MAX_RETRIES = 1000


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
    with db.unit_of_work() as conn:
        touched = bulk_store.cancel(conn, workspace_id, selection)
    ended = [run for run in touched if run.status == RunStatus.CANCELLED]
    _follow_up(workspace_id, ended)
    return Cancelled(len(ended), len(touched) - len(ended))


def _follow_up(workspace_id: UUID, ended: list[Any]) -> None:
    """What each cancelled run would have set going at its end: the oldest run queued behind
    it on its stream, and the limit slots it may have held."""
    streams = {run.stream_id for run in ended}
    with db.unit_of_work() as conn:
        queued = [run_id for stream_id in streams for run_id in store.next_queued(conn, stream_id)]
    dispatch.publish_many(queued)
    keys = sorted({key for run in ended if run.gated for key in run.limit_keys})
    if any(run.gated for run in ended):
        gate.release(workspace_id, keys)


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
    dispatch.publish_many(Job(run.id, run.priority) for run in created if not run.gated)
    keys = sorted({key for run in created if run.gated for key in run.limit_keys})
    if any(run.gated for run in created):
        gate.release(workspace_id, keys)
    return Retried(len(created), len(originals) > MAX_RETRIES)
