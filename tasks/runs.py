"""The task that executes a run: parse the id, hand it to the executor."""

from __future__ import annotations

from uuid import UUID

from celery import Task

from app import app
from app.limits import gate
from app.runs import executor
from app.runs.dispatch import EXECUTE_GATED_TASK, EXECUTE_TASK, RELEASE_TASK


@app.task(name=EXECUTE_TASK, bind=True)
def execute(self: Task, run_id: str) -> str | None:
    status = executor.execute(UUID(run_id), worker=self.request.hostname or "unknown")
    return None if status is None else status.value


@app.task(name=EXECUTE_GATED_TASK, bind=True)
def execute_gated(self: Task, run_id: str) -> str | None:
    """A run that names limit keys or belongs to a workspace with a cap."""
    status = executor.execute(UUID(run_id), self.request.hostname or "unknown", gated=True)
    return None if status is None else status.value


@app.task(name=RELEASE_TASK)
def release(workspace_id: str, key: str) -> int:
    """A rate key's window opened: let the runs waiting on it go."""
    return gate.wake(UUID(workspace_id), key)
