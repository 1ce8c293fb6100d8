"""Housekeeping as Celery tasks on the control queue, for running by hand
(`celery -A app call runway.housekeeping.sweep`). Beat runs the same functions itself."""

from __future__ import annotations

from dataclasses import asdict

from app import app, housekeeping
from app.schedules.entries import SWEEP_TASK


@app.task(name=SWEEP_TASK)
def sweep() -> dict[str, int]:
    return asdict(housekeeping.sweep())
