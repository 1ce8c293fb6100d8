"""The one place that publishes runs to the broker: by task name, carrying only the run id.

Publishing happens after the row is committed. When the broker is unreachable the run stays
in Postgres and the housekeeping sweep publishes it later, so a failed publish is logged,
never raised to the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from uuid import UUID

from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from app.celery import app
from app.settings import get_settings

log = logging.getLogger(__name__)

EXECUTE_TASK = "runway.runs.execute"

# Fail fast when the broker is down: the row is safe and the sweep will publish again.
_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def publish(run_id: UUID, *, countdown: float | None = None) -> bool:
    """Send one run to the workers; False (logged) when the broker did not take it."""
    return publish_many([run_id], countdown=countdown) == 1


def publish_many(run_ids: Iterable[UUID], *, countdown: float | None = None) -> int:
    """Send runs over one broker connection; returns how many were sent."""
    queue = get_settings().runs_queue
    sent = 0
    try:
        with app.producer_or_acquire() as producer:
            for run_id in run_ids:
                app.send_task(
                    EXECUTE_TASK,
                    args=[str(run_id)],
                    task_id=str(run_id),
                    queue=queue,
                    countdown=countdown,
                    producer=producer,
                    retry=True,
                    retry_policy=_RETRY_POLICY,
                )
                sent += 1
    except (KombuError, RedisError, OSError) as error:
        log.warning("broker did not take run(s), the sweep will publish them: %s", error)
    return sent
