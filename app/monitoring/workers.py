"""The Celery workers online, with their load: one broadcast, cached briefly per process.

Workers are shared by every workspace, so this view is the same for every API key.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from app import db
from app.celery import app
from app.errors import BrokerUnavailable
from app.runs import store

INSPECT_TIMEOUT = 1.0  # how long workers have to answer the broadcast
CACHE_SECONDS = 2.0
# A broker that accepts connections but never answers must not hold a request longer.
SOCKET_OPTIONS = {"socket_timeout": INSPECT_TIMEOUT, "socket_connect_timeout": INSPECT_TIMEOUT}
WAIT_SECONDS = 1.5  # how long a caller waits for another caller's broadcast


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    active: int  # runs it is executing now, as their rows say
    processed: int  # tasks it has received since it started


@dataclass
class _Cache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    taken_at: float = -math.inf
    found: list[WorkerInfo] = field(default_factory=list)
    error: BrokerUnavailable | None = None


_cache = _Cache()


def workers() -> list[WorkerInfo]:
    """The workers that answered within INSPECT_TIMEOUT, at most CACHE_SECONDS old.

    Concurrent callers wait (at most WAIT_SECONDS) for the one broadcast in flight instead
    of sending their own. Raises BrokerUnavailable when the broker cannot be reached; that
    answer is cached too, so a broker that hangs costs one broadcast per CACHE_SECONDS.
    """
    if not _cache.lock.acquire(timeout=WAIT_SECONDS):
        raise BrokerUnavailable("the broker is slow to answer: a broadcast is still waiting")
    try:
        if time.monotonic() - _cache.taken_at >= CACHE_SECONDS:
            _refresh()
        if _cache.error is not None:
            raise _cache.error
        return _cache.found
    finally:
        _cache.lock.release()


def _refresh() -> None:
    try:
        _cache.found, _cache.error = inspect_workers(app), None
    except BrokerUnavailable as error:
        _cache.found, _cache.error = [], error
    _cache.taken_at = time.monotonic()


def clear_cache() -> None:
    """Forget the last answer: the next call broadcasts."""
    with _cache.lock:
        _cache.taken_at = -math.inf


def inspect_workers(celery_app: Celery) -> list[WorkerInfo]:
    """Ask the workers of `celery_app` now (no cache): names and counts from one `stats`
    broadcast, the runs each is executing from Postgres."""
    stats = _stats(celery_app)
    with db.unit_of_work() as conn:
        running = store.running_by_worker(conn)
    return [
        WorkerInfo(name, running.get(name, 0), sum(info.get("total", {}).values()))
        for name, info in sorted(stats.items())
    ]


def _stats(celery_app: Celery) -> dict[str, Any]:
    try:
        with celery_app.connection_for_read(transport_options=SOCKET_OPTIONS) as connection:
            connection.ensure_connection(max_retries=0, timeout=INSPECT_TIMEOUT)
            inspect = celery_app.control.inspect(timeout=INSPECT_TIMEOUT, connection=connection)
            replies: dict[str, Any] | None = inspect.stats()
    except (KombuError, RedisError, OSError) as error:
        raise BrokerUnavailable(f"the broker did not answer: {error}") from error
    return replies or {}
