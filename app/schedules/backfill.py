"""Backfill: a scheduled run for every slot of a stream's schedule in [from, to) that has none.

The slots are the stream's own: its cron in its time zone, with the DST rules of
app/schedules/cron.py, or its interval on its grid; only past ones (`to` is taken as now
when later), and none for an empty range. One transaction inserts the runs
(the unique `(stream_id, scheduled_for)` of scheduled runs makes a slot that has its run,
however it got it, and a second or concurrent call, create nothing) and their `backfilled`
ticks; the runs start after the commit, through their limit keys and priority like any
scheduled run. Backfilled runs are not checked for overlap with one another: throttle a
large backfill with a limit key, or `priority: low`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy.engine import Connection, Row

from app import db
from app.errors import Conflict, InvalidInput, NotFound
from app.limits import gate
from app.runs import starting
from app.runs import store as runs_store
from app.schedules import config as schedules
from app.schedules import ticker
from app.settings import get_settings
from app.streams import store as streams_store

MAX_SLOTS = 1000
_SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class Backfill:
    slots: list[datetime]  # every slot in [from, min(to, now)), oldest first
    created: int  # runs created (a dry run: runs it would create)
    existing: int  # slots that already had their run
    dry_run: bool


def backfill(
    workspace_id: UUID, stream_id: UUID, start: datetime, end: datetime, dry_run: bool = False
) -> Backfill:
    with db.unit_of_work() as conn:
        # Locked (not for a dry run): the ticker skips the stream meanwhile, instead of
        # writing its slot's tick and run in the opposite order to this transaction.
        stream = streams_store.get(conn, stream_id, workspace_id, for_update=not dry_run)
        if stream is None:
            raise NotFound("stream", stream_id)
        slots = slots_of(stream, start, _past(stream, end))
        if dry_run:
            existing = runs_store.scheduled_slots(conn, stream_id, slots)
            return Backfill(slots, len(slots) - len(existing), len(existing), True)
        created = _create(conn, stream, slots)
    starting.start(created)
    return Backfill(slots, len(created), len(slots) - len(created), False)


def _create(conn: Connection, stream: Row[Any], slots: list[datetime]) -> list[starting.Created]:
    capped = gate.capped_workspaces(conn, [stream.workspace_id])
    attempts = get_settings().max_attempts
    now = datetime.now(UTC)  # `late_at`: a backfilled slot is past by design, never "late"
    runs = [
        ticker.scheduled_run(stream, uuid.uuid4(), slot, None, attempts, capped) | {"late_at": now}
        for slot in slots
    ]
    inserted = set(runs_store.insert_scheduled(conn, runs))
    made = [run for run in runs if run["id"] in inserted]
    streams_store.record_backfilled(
        conn,
        [
            {
                "stream_id": stream.id,
                "scheduled_for": run["scheduled_for"],
                "execution_id": run["id"],
            }
            for run in made
        ],
    )
    return [starting.Created.of(run) for run in made]


def _past(stream: Row[Any], end: datetime) -> datetime:
    """`end`, but no later than now, nor than a slot already due that beat has yet to
    fire (it fires it, with its overlap check)."""
    due: datetime | None = stream.next_scheduled_run
    return min(end, datetime.now(UTC), *([due] if due is not None else []))


def slots_of(stream: Row[Any], start: datetime, end: datetime) -> list[datetime]:
    """The stream's slots in [start, end), at most MAX_SLOTS (InvalidInput beyond)."""
    if stream.schedule_config is None:
        raise Conflict(f"stream {stream.id} has no schedule to backfill")
    if end <= start:
        return []
    config = schedules.parse(stream.schedule_config)
    # An interval's grid: where the stream's slots fall, or fell.
    anchor = stream.next_scheduled_run or stream.last_scheduled_run
    if anchor is None and config.interval_seconds is not None:
        raise Conflict(
            f"stream {stream.id} has never been scheduled, so its interval has no grid yet: "
            "enable it first"
        )
    slots: list[datetime] = []
    try:
        # From a whole second before: cron's arithmetic far from 1970 has no microseconds.
        moment = config.next_after(start.replace(microsecond=0) - _SECOND, anchor)
        while moment < start:
            moment = config.next_after(moment, anchor)
        while moment < end:
            if len(slots) == MAX_SLOTS:
                raise InvalidInput(
                    "to", f"[from, to) holds more than {MAX_SLOTS} slots: backfill it in parts"
                )
            slots.append(moment)
            moment = config.next_after(moment, anchor)
    except (OverflowError, ValueError):  # near the ends of the calendar
        raise InvalidInput("from", "out of the range of dates a schedule has") from None
    return slots
