"""RedBeat's entries, defined in one place: Runway's housekeeping.

They are re-created whenever a beat becomes leader (so after Redis lost them), and the
leading beat runs them itself (app/schedules/beat.py), never behind pipeline runs. Each is
also a Celery task on the control queue (tasks/housekeeping.py), for running by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from app import housekeeping, retention
from app.settings import get_settings

SWEEP_TASK = "runway.housekeeping.sweep"
RETENTION_TASK = "runway.housekeeping.retention"

RETENTION_PERIOD = timedelta(hours=1)

# Task name -> the function beat calls for it.
LOCAL: dict[str, Callable[[], Any]] = {
    SWEEP_TASK: housekeeping.sweep,
    RETENTION_TASK: retention.purge,
}

# Run at once whenever a beat starts leading, whenever they last ran.
ON_LEADING: tuple[str, ...] = (RETENTION_TASK,)


def schedule() -> dict[str, dict[str, Any]]:
    settings = get_settings()
    options = {"queue": settings.control_queue}
    return {
        "runway-sweep": {
            "task": SWEEP_TASK,
            "schedule": timedelta(seconds=settings.sweep_seconds),
            "options": options,
        },
        "runway-retention": {
            "task": RETENTION_TASK,
            "schedule": RETENTION_PERIOD,
            "options": options,
        },
    }
