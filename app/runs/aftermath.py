"""What a run's end sets going, whoever wrote the end (its worker, or the sweep's rescue):
its retry, the runs queued behind it (overlap "queue"), and auto-pause."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

import psycopg
from sqlalchemy.exc import SQLAlchemyError

from app.limits import gate
from app.runs import dispatch
from app.schedules import pausing
from app.states import RunStatus, RunType

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ended:
    """An attempt that stopped running, and what its follow-up needs to know."""

    id: UUID
    status: RunStatus
    run_type: str
    stream_id: UUID
    priority: str = "normal"
    gated: bool = False  # it held slots of `limit_keys` and of its workspace
    workspace_id: UUID | None = None
    limit_keys: Sequence[str] = field(default_factory=list)


def follow_up(run: Ended, released: Sequence[UUID], retry_in: float | None = None) -> None:
    if run.status is RunStatus.RETRYING:
        dispatch.publish(dispatch.Job(run.id, run.priority, run.gated), countdown=retry_in)
    if released:
        dispatch.publish_many(released)
    if run.status is RunStatus.FAILED and run.run_type == RunType.SCHEDULED:
        pausing.after_failed_run(run.stream_id)
    if run.gated and run.workspace_id is not None:
        _release(run.workspace_id, run.limit_keys)


def _release(workspace_id: UUID, limit_keys: Sequence[str]) -> None:
    """Last, and never raising: a release that fails is made good by the sweep's."""
    try:
        gate.after_end(workspace_id, limit_keys)
    except (psycopg.Error, SQLAlchemyError) as error:
        log.warning("runs waiting on %s not released (the sweep will): %s", limit_keys, error)
