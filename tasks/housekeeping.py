"""Housekeeping as Celery tasks on the control queue, for running by hand
(`celery -A app call runway.housekeeping.sweep`). Beat runs the same functions itself."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from app import app, housekeeping, retention
from app.schedules.entries import RETENTION_TASK, SWEEP_TASK


@app.task(name=SWEEP_TASK)
def sweep() -> dict[str, int]:
    return asdict(housekeeping.sweep())


@app.task(name=RETENTION_TASK)
def purge() -> dict[str, Any]:
    return retention.purge().summary()
