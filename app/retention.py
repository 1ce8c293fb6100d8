"""Retention: delete ended runs, schedule ticks and webhook deliveries older than
RUNWAY_RETENTION_DAYS.

The leading beat purges when it starts leading, then hourly (app/schedules/entries.py), on
its housekeeping thread, so a long purge never delays a tick. `POST /runs/cleanup` deletes
the same way.

Every delete is bounded: at most BATCH rows per statement, oldest first along an index
on the age column, each statement its own short transaction, so no lock or transaction
outlives one batch: a concurrent write waits at most one batch (tens of milliseconds, for the
run tallies of the batch's workspaces) behind a purge. The purgers take turns,
one batch each, until a batch deletes fewer rows than asked (nothing left) or the call's
time budget is spent; what is left goes at the next call.

A live run (pending, running, retrying) is never deleted, whatever its age. Nothing waits on
a deleted run: a run queued behind one (`after_run`) treats a run that no longer exists as
ended, and a tick's `execution_id` and a run's `retry_of` are plain ids, not foreign keys.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from app import db
from app.errors import InvalidInput
from app.runs import store as runs_store
from app.settings import get_settings
from app.states import RunStatus
from app.streams import store as streams_store
from app.webhooks import store as webhooks_store

log = logging.getLogger(__name__)

BATCH = 5000
# One call deletes for about this long at most (it stops between batches): it bounds how
# long beat's housekeeping thread is busy, how long beat waits for it when stopping, and how
# long a cleanup request takes. On 2 cores a purge deletes about 400,000 rows a second
# (bench/retention.py): ten seconds is several times what 10,000 streams every minute add
# in an hour (1.2 million runs and ticks).
BUDGET_SECONDS = 10.0
# The oldest time Postgres and Python both hold: where the first batch starts.
_BEGINNING = datetime(1, 1, 1, tzinfo=UTC)

# Deletes up to `limit` rows aged in [after, before); (how many, the latest age deleted).
DeleteBatch = Callable[[Connection, datetime, datetime, int], tuple[int, datetime | None]]


@dataclass(frozen=True)
class Purger:
    table: str
    delete: DeleteBatch


# What retention deletes.
PURGERS: tuple[Purger, ...] = (
    Purger("pipeline_executions", runs_store.delete_ended),
    Purger("schedule_ticks", streams_store.delete_ticks),
    Purger("webhook_deliveries", webhooks_store.delete_deliveries),
)


@dataclass(frozen=True)
class Purged:
    table: str
    deleted: int
    batches: tuple[float, ...]  # seconds each batch took, its commit included
    finished: bool  # False: the budget ran out with rows left


@dataclass(frozen=True)
class RetentionReport:
    cutoff: datetime | None  # None: retention is off (RUNWAY_RETENTION_DAYS=0)
    purged: tuple[Purged, ...] = ()
    seconds: float = 0.0

    @property
    def deleted(self) -> int:
        return sum(purged.deleted for purged in self.purged)

    @property
    def finished(self) -> bool:
        return all(purged.finished for purged in self.purged)

    @property
    def longest_batch(self) -> float:
        return max((max(p.batches, default=0.0) for p in self.purged), default=0.0)

    def summary(self) -> dict[str, Any]:
        return {
            "deleted": {purged.table: purged.deleted for purged in self.purged},
            "finished": self.finished,
            "seconds": round(self.seconds, 3),
            "longest_batch_seconds": round(self.longest_batch, 3),
        }


@dataclass
class _Progress:
    """One purger's way through its table: each step deletes one batch in a transaction."""

    table: str
    delete: DeleteBatch
    before: datetime
    after: datetime = _BEGINNING
    deleted: int = 0
    batches: list[float] = field(default_factory=list)
    finished: bool = False

    def step(self, limit: int) -> None:
        started = time.monotonic()
        with db.unit_of_work() as conn:
            count, last = self.delete(conn, self.before, self.after, limit)
        self.batches.append(time.monotonic() - started)
        self.deleted += count
        self.after = last or self.after
        self.finished = count < limit

    def result(self) -> Purged:
        return Purged(self.table, self.deleted, tuple(self.batches), self.finished)


def purge(
    now: datetime | None = None,
    *,
    batch_size: int = BATCH,
    budget_seconds: float = BUDGET_SECONDS,
) -> RetentionReport:
    """Delete what is older than RUNWAY_RETENTION_DAYS (counted back from `now`, by default
    the database's clock), in batches, for about `budget_seconds` at most."""
    days = get_settings().retention_days
    if days == 0:
        return RetentionReport(cutoff=None)
    started = time.monotonic()
    cutoff = (now or _database_now()) - timedelta(days=days)
    progress = [_Progress(purger.table, purger.delete, cutoff) for purger in PURGERS]
    _drain(progress, batch_size, started + budget_seconds)
    report = RetentionReport(
        cutoff, tuple(p.result() for p in progress), time.monotonic() - started
    )
    _log(report)
    return report


def cleanup(
    workspace_id: UUID,
    status: RunStatus,
    older_than_days: int,
    *,
    batch_size: int = BATCH,
    budget_seconds: float = BUDGET_SECONDS,
) -> int:
    """Delete a workspace's runs that ended with `status` more than `older_than_days` ago,
    in batches, for about `budget_seconds` at most; how many it deleted."""
    if not status.is_terminal:
        raise InvalidInput("status", "only completed, failed or cancelled runs can be deleted")
    started = time.monotonic()
    cutoff = _database_now() - timedelta(days=older_than_days)
    delete = partial(runs_store.delete_ended, workspace_id=workspace_id, status=status)
    progress = _Progress("pipeline_executions", delete, cutoff)
    _drain([progress], batch_size, started + budget_seconds)
    if not progress.finished:
        log.info("cleanup: deleted %d %s run(s), more are left", progress.deleted, status)
    return progress.deleted


def _drain(progress: list[_Progress], batch_size: int, deadline: float) -> None:
    """Each unfinished purger deletes a batch in turn, until all are done or time is up."""
    while True:
        left = [each for each in progress if not each.finished]
        if not left:
            return
        for each in left:
            each.step(batch_size)
        if time.monotonic() >= deadline:
            return


def _database_now() -> datetime:
    """The database's clock, which every timestamp compared here was written with."""
    with db.unit_of_work() as conn:
        now: datetime = conn.execute(sa.select(sa.func.now())).scalar_one()
    return now


def _log(report: RetentionReport) -> None:
    if report.deleted:
        log.info(
            "retention: deleted %s older than %s in %.1fs (longest batch %.3fs)",
            ", ".join(f"{p.deleted} {p.table}" for p in report.purged),
            report.cutoff,
            report.seconds,
            report.longest_batch,
        )
    if not report.finished:
        log.info("retention: time budget spent with rows left; the next run continues")
