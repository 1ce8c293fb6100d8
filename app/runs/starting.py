"""Starting runs just created, after their commit: the one rule for every way a run is made
(POST /runs, a retry, a bulk retry, beat's tick, a backfill).

A run that may start is published. A gated run was created parked (`waiting_for` set, no
message): its keys, and its workspace's cap, are released instead, which publishes what
fits. A run queued behind its stream (overlap `queue`) is published, and its claim decides.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from anyio import to_thread
from kombu.exceptions import KombuError
from redis.exceptions import RedisError
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DBAPIError

from app.limits import gate
from app.runs import dispatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Created:
    """A run just inserted, and what starting it needs."""

    job: dispatch.Job
    workspace_id: uuid.UUID
    limit_keys: list[str]
    waiting_for: dict[str, Any] | None

    @classmethod
    def of(cls, run: Mapping[str, Any] | RowMapping) -> Created:
        """From a run's values or its row's mapping."""
        job = dispatch.Job(run["id"], run["priority"], run["gated"])
        return cls(job, run["workspace_id"], list(run["limit_keys"]), run["waiting_for"])


def start(created: Sequence[Created]) -> int:
    """After the commit: publish the runs that may start, release the keys of parked ones;
    how many runs that set going."""
    fired = dispatch.publish_many(run.job for run in created if not _parked(run))
    return fired + _release_parked(created)


async def start_async(created: Created) -> int:
    """`start` for one run, on the event loop: a run that may start is published there; a
    parked one's release (Postgres and Redis, synchronous) runs in a worker thread. Never
    raises: the run is committed, and the sweeps publish or release what did not go."""
    if not _parked(created):
        return await dispatch.publish_async([created.job])
    try:
        return await to_thread.run_sync(_release_parked, [created])
    except (DBAPIError, psycopg.Error, RedisError, KombuError, OSError) as error:
        log.warning("release of new run %s failed, the sweep will: %s", created.job.id, error)
        return 0


def _parked(created: Created) -> bool:
    return created.waiting_for is not None and created.waiting_for["kind"] != "overlap"


def _release_parked(created: Sequence[Created]) -> int:
    keys: dict[uuid.UUID, set[str]] = {}
    for run in created:
        if _parked(run):
            keys.setdefault(run.workspace_id, set()).update(run.limit_keys)
    return sum(gate.release(workspace_id, sorted(names)) for workspace_id, names in keys.items())
