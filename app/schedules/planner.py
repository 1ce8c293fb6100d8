"""What to do with a stream whose slot came due: pure rules, no I/O, tested with fixed clocks.

For each due stream the ticker asks `plan()`. All slots from `next_scheduled_run` up to now
are due (an outage longer than MAX_LISTED_MISSES slots is listed in part). Every listed slot
leaves one tick:
- all but the latest are `missed` (beat was not running, or was behind);
- the latest fires, unless `misfire` is `skip` and it is already late (then `missed`), or
  `overlap` is `skip` and a run of the stream is live (then `skipped_overlap`).
With `overlap: queue` the fired run waits until every older run of the stream has ended
(`after_run` names the newest of them; the claim checks them all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from app.schedules.config import ScheduleConfig

# Missed slots are listed one by one up to this many; a longer outage is summarised.
MAX_LISTED_MISSES = 100


@dataclass(frozen=True)
class LiveRun:
    id: UUID
    status: str


@dataclass(frozen=True)
class Tick:
    scheduled_for: datetime
    outcome: str  # fired | skipped_overlap | missed
    reason: str | None = None


@dataclass(frozen=True)
class Plan:
    next_run: datetime
    ticks: list[Tick] = field(default_factory=list)
    fire: datetime | None = None  # the slot to create a scheduled run for
    after_run: UUID | None = None  # overlap "queue": wait for this run


def due_slots(
    config: ScheduleConfig, first: datetime, now: datetime
) -> tuple[list[datetime], bool]:
    """The due slots in [first, now], in order; at most MAX_LISTED_MISSES + 1 of them.

    The flag says the walk stopped early (a longer outage): more slots were due than listed.
    """
    slots = [first]
    while len(slots) <= MAX_LISTED_MISSES:
        following = config.next_after(slots[-1], anchor=slots[-1])
        if following > now:
            return slots, False
        slots.append(following)
    return slots, True


def plan(
    config: ScheduleConfig,
    first_slot: datetime,
    now: datetime,
    live: LiveRun | None,
    misfire_grace: timedelta,
) -> Plan:
    slots, truncated = due_slots(config, first_slot, now)
    latest = slots[-1]
    next_run = config.next_after(now, anchor=latest)
    missed = f"{'at least ' if truncated else ''}{len(slots) - 1}"
    reason = f"not fired on time: {missed} slot(s) came due while beat was away or behind"
    ticks = [Tick(slot, "missed", reason) for slot in slots[:-1]]
    if config.misfire == "skip" and now - latest > misfire_grace:
        late = f"{(now - latest).total_seconds():.0f}s late and misfire is 'skip'"
        return Plan(next_run, [*ticks, Tick(latest, "missed", late)])
    if live is not None and config.overlap == "skip":
        reason = f"run {live.id} is still {live.status} (overlap 'skip')"
        return Plan(next_run, [*ticks, Tick(latest, "skipped_overlap", reason)])
    after_run = live.id if live is not None and config.overlap == "queue" else None
    notes = [f"catch-up run for {missed} missed slot(s)"] if ticks else []
    notes += [f"queued behind run {after_run}"] if after_run else []
    fired = Tick(latest, "fired", "; ".join(notes) or None)
    return Plan(next_run, [*ticks, fired], fire=latest, after_run=after_run)
