"""The housekeeping sweep, run by the leading beat every RUNWAY_SWEEP_SECONDS.

1. Rescue: running runs whose heartbeat is older than RUNWAY_LEASE_SECONDS lost their
   worker; they go back to retrying (and are published at once), or end failed or
   cancelled. Runs still running past their cancel grace end cancelled. A late write from
   the old worker loses to the attempt fence.
2. Re-publish: pending or retrying runs that nobody claimed for a lease are published
   again, but only while their queue is empty (runs queued by overlap "queue" that may
   start now, whatever the queue holds). An empty queue with unclaimed runs means
   their messages were lost (Redis restarted, a publish failed); a busy queue means they are
   merely waiting, and publishing them again would only double the backlog. Runs parked by
   flow control have no message by design and are not re-published.
3. Release: every limit key (or workspace cap) with runs waiting on it gets a release, in
   case the wake-up that should have let them go was lost (a worker killed between its
   run's end and the release, a scheduled release whose message was lost).
4. Late: scheduled runs still pending `late_after_seconds` after their slot raise `run.late`
   (app/webhooks/outbox.py), each once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from app import db, logs, monitoring
from app.limits import gate
from app.runs import aftermath, dispatch, store
from app.settings import get_settings
from app.webhooks import outbox

log = logging.getLogger(__name__)

BATCH = 1000


@dataclass(frozen=True)
class SweepReport:
    rescued: int = 0
    republished: int = 0
    released: int = 0  # waiting runs let go by a release their wake-up did not bring
    late: int = 0  # scheduled runs found late (run.late)


def sweep() -> SweepReport:
    report = SweepReport(
        rescued=rescue(),
        republished=republish(),
        released=gate.sweep(get_settings().sweep_seconds),
        late=mark_late(),
    )
    if report.rescued or report.republished or report.released or report.late:
        log.info(
            "sweep: rescued %d run(s), re-published %d, released %d, found %d late",
            report.rescued,
            report.republished,
            report.released,
            report.late,
        )
    return report


def rescue() -> int:
    settings = get_settings()
    with db.hot_connection() as conn:
        rescued = store.rescue_expired(
            conn,
            settings.lease_seconds,
            settings.cancel_grace_seconds,
            BATCH,
            margin=settings.heartbeat_seconds,
        )
    for run in rescued:
        log.warning(
            "run %s lost its worker: now %s",
            run.id,
            run.status,
            extra=logs.lifecycle(run.id, run.stream_id, run.run_type, run.attempt, run.status),
        )
        ended = aftermath.Ended(
            run.id,
            run.status,
            run.run_type,
            run.stream_id,
            run.priority,
            run.gated,
            run.workspace_id,
            run.limit_keys,
        )
        aftermath.follow_up(ended, run.released)
    return len(rescued)


def republish() -> int:
    """Behind a busy queue, only runs queued by overlap "queue" that may start now: each is
    published when an older run of its stream ends, but two runs ending at once can each
    see the other still live, and then neither publishes it."""
    settings = get_settings()
    queued_only = queue_depth(settings.runs_queue) > 0
    with db.hot_connection() as conn:
        lost = store.take_unclaimed(conn, settings.lease_seconds, BATCH, queued_only)
    sent = dispatch.publish_many(lost)  # in order, stopping at the first it cannot send
    monitoring.count_republished([job.id for job in lost[:sent]])
    return sent


def mark_late() -> int:
    with db.unit_of_work() as conn:
        return outbox.mark_late(conn, BATCH)


def queue_depth(queue: str) -> int:
    """Messages waiting in a queue (Redis keeps each queue as a list under its name)."""
    client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=5)
    try:
        return dispatch.queue_depth(client, queue)
    finally:
        client.close()
