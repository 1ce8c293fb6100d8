"""Beat's tick: claim the due streams in Postgres, record their slots, create their runs.

One transaction per batch: lock the due streams (FOR UPDATE SKIP LOCKED, so beats ticking
at once each take streams the others do not), look up their live runs, plan each stream
(app/schedules/planner.py), then insert runs and ticks (with the `schedule.missed` events of
missed ones) and advance `next_scheduled_run`, one statement each. The runs are published
after the commit; a publish that fails is made good by the housekeeping sweep. A beat that
stalls inside the transaction (stopped, cut off) loses it after IDLE_SECONDS, so other
beats are not kept from its streams for longer.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Row

from app import db
from app.limits import gate
from app.runs import starting
from app.runs import store as runs_store
from app.schedules.config import ScheduleConfig
from app.schedules.planner import LiveRun, Plan, plan
from app.settings import get_settings
from app.states import RunType
from app.streams import store as streams_store
from app.webhooks import outbox

log = logging.getLogger(__name__)

BATCH = 1000
# How long a batch's transaction may sit idle (between its statements) holding its streams.
IDLE_SECONDS = 60


@dataclass(frozen=True)
class TickReport:
    streams: int  # due streams handled
    fired: int  # runs created and published
    next_due: datetime | None  # the earliest slot still ahead
    clock: datetime  # Postgres' time when next_due was read


def tick(
    now: datetime | None = None, max_batches: int = 20, budget_seconds: float | None = None
) -> TickReport:
    """Handle every stream due at `now` (Postgres' time by default) in batches, then say
    when the next one is due.

    `budget_seconds`: stop after the batch that spends it, the rest left due for the next
    tick (beat keeps a tick shorter than its lock, which it extends between ticks)."""
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    streams = fired = 0
    for _ in range(max_batches):
        now, handled, created = _batch(now)
        fired += starting.start(created)
        streams += handled
        if handled < BATCH or (deadline is not None and time.monotonic() >= deadline):
            break
    with db.unit_of_work() as conn:
        next_due, clock = streams_store.next_due(conn)
    return TickReport(streams, fired, next_due, clock)


def _batch(now: datetime | None) -> tuple[datetime, int, list[starting.Created]]:
    """One batch at `now`, or at Postgres' time when None (one clock for all beats)."""
    grace = timedelta(seconds=get_settings().misfire_grace_seconds)
    with db.unit_of_work() as conn:
        clock = streams_store.begin_batch(conn, IDLE_SECONDS)
        now = now or clock
        due = streams_store.claim_due(conn, now, BATCH)
        if not due:
            return now, 0, []
        live = runs_store.live_by_stream(conn, [stream.id for stream in due])
        plans = [(stream, _plan(stream, now, live.get(stream.id), grace)) for stream in due]
        capped = gate.capped_workspaces(conn, (stream.workspace_id for stream in due))
        created = _persist(conn, plans, capped)
    log.log(
        logging.INFO if created else logging.DEBUG,
        "tick: %d due stream(s), %d run(s) created",
        len(due),
        len(created),
    )
    return now, len(due), created


def _plan(
    stream: Row[Any], now: datetime, live: tuple[uuid.UUID, str] | None, grace: timedelta
) -> Plan:
    # Validated when it was written (streams service); re-validating on every tick costs.
    config = ScheduleConfig.model_construct(**stream.schedule_config)
    current = LiveRun(*live) if live is not None else None
    # In UTC: Python subtracts times of one zone by their wall clocks (DST) whatever zone the
    # Postgres session hands them back in.
    return plan(config, stream.next_scheduled_run.astimezone(UTC), now, current, grace)


def _persist(
    conn: Connection, plans: list[tuple[Row[Any], Plan]], capped: set[uuid.UUID]
) -> list[starting.Created]:
    max_attempts = get_settings().max_attempts
    runs: list[dict[str, Any]] = []
    ticks: list[dict[str, Any]] = []
    for stream, decided in plans:
        run_id = uuid.uuid4() if decided.fire else None
        if decided.fire:
            runs.append(
                scheduled_run(stream, run_id, decided.fire, decided.after_run, max_attempts, capped)
            )
        ticks += [
            {
                "stream_id": stream.id,
                "scheduled_for": tick_.scheduled_for,
                "outcome": tick_.outcome,
                "execution_id": run_id if tick_.outcome == "fired" else None,
                "reason": tick_.reason,
            }
            for tick_ in decided.ticks
        ]
    outbox.schedule_missed(conn, streams_store.record_ticks(conn, ticks))
    streams_store.advance(
        conn,
        [stream.id for stream, _ in plans],
        [decided.next_run for _, decided in plans],
        [decided.fire for _, decided in plans],
    )
    # Last before the commit: inserting runs takes their workspaces' tally rows (see
    # app/runs/store.py), and claims of those workspaces wait on them until the commit.
    inserted = set(runs_store.insert_scheduled(conn, runs))
    return [starting.Created.of(run) for run in runs if run["id"] in inserted]


def scheduled_run(
    stream: Row[Any],
    run_id: uuid.UUID | None,
    slot: datetime,
    after_run: uuid.UUID | None,
    max_attempts: int,
    capped: set[uuid.UUID],
) -> dict[str, Any]:
    """The values of the stream's scheduled run for `slot` (`after_run`: queued behind it)."""
    waiting_for = gate.parking(stream.limit_keys, stream.workspace_id in capped)
    gated = waiting_for is not None
    if after_run is not None:
        waiting_for = {"kind": "overlap", "key": None, "until": None}
    return {
        "id": run_id,
        "workspace_id": stream.workspace_id,
        "stream_id": stream.id,
        "run_type": RunType.SCHEDULED.value,
        "scheduled_for": slot,
        "pipeline": stream.pipeline,
        "params": stream.params,
        "max_attempts": max_attempts,
        "after_run": after_run,
        "priority": stream.priority,
        "limit_keys": list(stream.limit_keys),
        "gated": gated,
        "waiting_for": waiting_for,
    }
