"""RedBeat's entries, defined in one place: Runway's housekeeping.

They are re-created whenever a beat becomes leader (so after Redis lost them), and the
leading beat runs them itself (app/schedules/beat.py), never behind pipeline runs. Each is
also a Celery task on the control queue (tasks/housekeeping.py), for running by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from app import housekeeping
from app.settings import get_settings

SWEEP_TASK = "runway.housekeeping.sweep"

# Task name -> the function beat calls for it.
LOCAL: dict[str, Callable[[], Any]] = {SWEEP_TASK: housekeeping.sweep}


def schedule() -> dict[str, dict[str, Any]]:
    settings = get_settings()
    return {
        "runway-sweep": {
            "task": SWEEP_TASK,
            "schedule": timedelta(seconds=settings.sweep_seconds),
            "options": {"queue": settings.control_queue},
        },
    }
