"""A schedule in words, for people: "every Monday at 06:00 Europe/Berlin".

Common shapes of cron get a sentence; anything else is shown as its cron expression, which
is never wrong. The time zone is always named, UTC included.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from app.schedules.cron import MACROS

DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_UNITS = (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1))
_NUMBER = re.compile(r"[0-9]{1,2}")
_EVERY = re.compile(r"\*/([0-9]{1,2})")


def describe(config: Mapping[str, Any] | None) -> str:
    """The schedule of a stream's `schedule_config`; "no schedule" without one."""
    if config is None:
        return "no schedule"
    zone = config.get("timezone") or "UTC"
    if config.get("interval_seconds") is not None:
        return interval(int(config["interval_seconds"]))
    return f"{cron(str(config.get('cron') or ''))} {zone}"


def interval(seconds: int) -> str:
    for unit, size in _UNITS:
        if seconds % size == 0:
            count = seconds // size
            return f"every {unit}" if count == 1 else f"every {count} {unit}s"
    return f"every {seconds} seconds"


def cron(expr: str) -> str:
    """A sentence for a five-field cron expression, or `cron <expr>` when it has none."""
    text = " ".join(expr.split())
    fields = MACROS.get(text.lower(), text).split(" ")
    if len(fields) != 5:
        return f"cron {text}"
    minute, hour, day, month, weekday = fields
    if month != "*":
        return f"cron {text}"
    sentence = _frequent(minute, hour, day, weekday) or _daily(minute, hour, day, weekday)
    return sentence or f"cron {text}"


def _frequent(minute: str, hour: str, day: str, weekday: str) -> str | None:
    """More often than once a day: every minute, every N minutes, every hour at :MM."""
    if (hour, day, weekday) != ("*", "*", "*"):
        return None
    if minute == "*":
        return "every minute"
    if match := _EVERY.fullmatch(minute):
        return interval(int(match[1]) * 60)
    if _NUMBER.fullmatch(minute):
        return f"every hour at :{int(minute):02d}"
    return None


def _daily(minute: str, hour: str, day: str, weekday: str) -> str | None:
    """Once on the days it names, at one time of day."""
    if not (_NUMBER.fullmatch(minute) and _NUMBER.fullmatch(hour)):
        return None
    at = f"at {int(hour):02d}:{int(minute):02d}"
    if day == "*" and weekday == "*":
        return f"every day {at}"
    if day == "*":
        days = _weekdays(weekday)
        return None if days is None else f"every {days} {at}"
    if weekday == "*" and _NUMBER.fullmatch(day):
        return f"on day {int(day)} of every month {at}"
    return None


def _weekdays(field: str) -> str | None:
    """ "Monday", "Monday and Friday", "weekday" (1-5), or None for a shape it does not read."""
    if field in ("1-5", "mon-fri", "MON-FRI"):
        return "weekday"
    names = []
    for part in field.split(","):
        if not _NUMBER.fullmatch(part) or int(part) > 7:
            return None
        names.append(DAYS[int(part) % 7])
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]
