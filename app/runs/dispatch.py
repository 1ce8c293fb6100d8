"""The one place that publishes runs to the broker: by task name, carrying only the run id.

Publishing happens after the row is committed. When the broker is unreachable the run stays
in Postgres and the housekeeping sweep publishes it later, so a failed publish is logged,
never raised to the caller.

A run's priority is the message's: Redis keeps one list per priority step and workers pop
the highest first (kombu's Redis transport: 0 is the highest), so a `high` run published
behind thousands of `normal` ones is the next to start. A gated run (limit keys, or a
workspace cap) is sent to the task that claims through the gate (app/limits/gate.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from uuid import UUID

import redis
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from app.celery import app
from app.runs.job import Job
from app.settings import get_settings

log = logging.getLogger(__name__)

__all__ = ["Job", "publish", "publish_many", "publish_release", "queue_depth"]

EXECUTE_TASK = "runway.runs.execute"
EXECUTE_GATED_TASK = "runway.runs.execute_gated"
RELEASE_TASK = "runway.limits.release"

# Message priority per run priority; kombu's default Redis steps are 0, 3, 6 and 9.
PRIORITY_STEPS = {"high": 0, "normal": 3, "low": 6}
_STEPS = (0, 3, 6, 9)
_SEPARATOR = "\x06\x16"  # kombu's Redis transport names a queue's step lists queue + sep + step

# Fail fast when the broker is down: the row is safe and the sweep will publish again.
_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def publish(run: UUID | Job, *, countdown: float | None = None) -> bool:
    """Send one run to the workers; False (logged) when the broker did not take it."""
    return publish_many([run], countdown=countdown) == 1


def publish_many(runs: Iterable[UUID | Job], *, countdown: float | None = None) -> int:
    """Send runs over one broker connection; returns how many were sent."""
    queue = get_settings().runs_queue
    sent = 0
    try:
        with app.producer_or_acquire() as producer:
            for run in runs:
                job = run if isinstance(run, Job) else Job(run)
                app.send_task(
                    EXECUTE_GATED_TASK if job.gated else EXECUTE_TASK,
                    args=[str(job.id)],
                    task_id=str(job.id),
                    queue=queue,
                    priority=PRIORITY_STEPS.get(job.priority, PRIORITY_STEPS["normal"]),
                    countdown=countdown,
                    producer=producer,
                    retry=True,
                    retry_policy=_RETRY_POLICY,
                )
                sent += 1
    except (KombuError, RedisError, OSError) as error:
        log.warning("broker did not take run(s), the sweep will publish them: %s", error)
    return sent


def publish_release(workspace_id: UUID, key: str, countdown: float) -> bool:
    """Ask for a release of the runs waiting on a rate key when its window opens."""
    try:
        app.send_task(
            RELEASE_TASK,
            args=[str(workspace_id), key],
            queue=get_settings().control_queue,
            countdown=countdown,
            retry=True,
            retry_policy=_RETRY_POLICY,
        )
    except (KombuError, RedisError, OSError) as error:
        log.warning("broker did not take a release of key %s; the sweep will: %s", key, error)
        return False
    return True


def queue_lists(queue: str) -> list[str]:
    """The Redis lists that hold a queue's messages, highest priority first."""
    return [queue if step == 0 else f"{queue}{_SEPARATOR}{step}" for step in _STEPS]


def queue_depth(client: redis.Redis, queue: str) -> int:
    """Messages waiting in a queue, over all its priority lists (one round trip)."""
    with client.pipeline(transaction=False) as pipe:
        for name in queue_lists(queue):
            pipe.llen(name)
        return sum(int(size) for size in pipe.execute())
