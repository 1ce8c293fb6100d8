"""What a run's end sets going, whoever wrote the end (its worker, or the sweep's rescue):
its retry, the runs queued behind it (overlap "queue"), and auto-pause."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from app.limits import gate
from app.runs import dispatch
from app.schedules import pausing
from app.states import RunStatus, RunType


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
    if run.gated and run.workspace_id is not None:
        gate.after_end(run.workspace_id, run.limit_keys)
    if run.status is RunStatus.RETRYING:
        dispatch.publish(dispatch.Job(run.id, run.priority, run.gated), countdown=retry_in)
    if released:
        dispatch.publish_many(released)
    if run.status is RunStatus.FAILED and run.run_type == RunType.SCHEDULED:
        pausing.after_failed_run(run.stream_id)
