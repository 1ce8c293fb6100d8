"""What a run's end sets going, whoever wrote the end (its worker, or the sweep's rescue):
its retry, the runs queued behind it (overlap "queue"), and auto-pause."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from app.runs import dispatch
from app.schedules import pausing
from app.states import RunStatus, RunType


def follow_up(
    run_id: UUID,
    status: RunStatus,
    run_type: str,
    stream_id: UUID,
    released: Sequence[UUID],
    retry_in: float | None = None,
) -> None:
    if status is RunStatus.RETRYING:
        dispatch.publish(run_id, countdown=retry_in)
    if released:
        dispatch.publish_many(released)
    if status is RunStatus.FAILED and run_type == RunType.SCHEDULED:
        pausing.after_failed_run(stream_id)
