"""The task that executes a run: parse the id, hand it to the executor."""

from __future__ import annotations

from uuid import UUID

from celery import Task

from app import app
from app.runs import executor
from app.runs.dispatch import EXECUTE_TASK


@app.task(name=EXECUTE_TASK, bind=True)
def execute(self: Task, run_id: str) -> str | None:
    status = executor.execute(UUID(run_id), worker=self.request.hostname or "unknown")
    return None if status is None else status.value
