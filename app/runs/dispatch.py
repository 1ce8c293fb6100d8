"""The one place that publishes runs to the broker: by task name, carrying only the run id.

Runs are sent in batches: each message is built by Celery (`app.amqp.create_task_message`,
the protocol-2 message `send_task` sends) and published by kombu's producer inside
`Producer.batch()`, which on Redis queues the LPUSHes of up to `BATCH` messages in one
pipeline: one round trip a batch instead of one a message, and none of `send_task`'s
per-call routing and declaring. Workers, Flower and `celery inspect` see ordinary tasks.

Publishing happens after the row is committed. When the broker is unreachable the run stays
in Postgres and the housekeeping sweep publishes it later, so a failed publish is logged,
never raised to the caller.

A run's priority is the message's: Redis keeps one list per priority step and workers pop
the highest first (kombu's Redis transport: 0 is the highest), so a `high` run published
behind thousands of `normal` ones is the next to start. A gated run (limit keys, or a
workspace cap) is sent to the task that claims through the gate (app/limits/gate.py).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import redis
import redis.asyncio as aioredis
from celery import signals
from kombu.exceptions import KombuError
from kombu.serialization import dumps as serialize
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from app.celery import app
from app.runs.job import Job
from app.settings import get_settings

log = logging.getLogger(__name__)

__all__ = [
    "Job",
    "close_async",
    "open_async",
    "publish",
    "publish_async",
    "publish_many",
    "publish_release",
    "queue_depth",
]

EXECUTE_TASK = "runway.runs.execute"
EXECUTE_GATED_TASK = "runway.runs.execute_gated"
RELEASE_TASK = "runway.limits.release"

# Message priority per run priority; kombu's default Redis steps are 0, 3, 6 and 9.
PRIORITY_STEPS = {"high": 0, "normal": 3, "low": 6}
_STEPS = (0, 3, 6, 9)
_SEPARATOR = "\x06\x16"  # kombu's Redis transport names a queue's step lists queue + sep + step

# Fail fast when the broker is down: the row is safe and the sweep will publish again.
_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
# Messages a pipeline round trip carries. A batch that fails is not sent again (kombu cannot
# tell which of its messages arrived): its runs and the rest wait for the sweep.
BATCH = 1000


def publish(run: UUID | Job, *, countdown: float | None = None) -> bool:
    """Send one run to the workers; False (logged) when the broker did not take it."""
    return publish_many([run], countdown=countdown) == 1


def publish_many(runs: Iterable[UUID | Job], *, countdown: float | None = None) -> int:
    """Send runs in order, a batch per round trip; returns how many were sent, counting
    from the first: a batch the broker did not take stops the rest (logged)."""
    queue = get_settings().runs_queue
    jobs = [run if isinstance(run, Job) else Job(run) for run in runs]
    if not jobs:
        return 0
    sent = 0
    try:
        with app.producer_or_acquire() as producer:
            # Connecting is bounded as send_task's retry policy bounds it (kombu's own default
            # would retry for seconds while the caller waits).
            producer.connection.ensure_connection(**_RETRY_POLICY)
            for start in range(0, len(jobs), BATCH):
                batch = jobs[start : start + BATCH]
                _send_batch(producer, batch, queue, countdown)
                sent += len(batch)
    except (KombuError, RedisError, OSError) as error:
        log.warning("broker did not take run(s), the sweep will publish them: %s", error)
    return sent


def _send_batch(producer: Any, jobs: list[Job], queue: str, countdown: float | None) -> None:
    # A run published from a task (a retry, a release) is its child, as send_task records.
    parent = app.current_worker_task
    lineage = (
        (None, None)
        if parent is None
        else (parent.request.root_id or parent.request.id, parent.request.id)
    )
    messages = [_message(job, countdown, lineage) for job in jobs]
    with producer.batch(max_size=BATCH):
        for name, message, priority in messages:
            _publish(producer, name, message, queue, priority)


def _message(
    job: Job, countdown: float | None, lineage: tuple[str | None, str | None]
) -> tuple[str, Any, int]:
    """Celery's own task message for a run, as `send_task` builds it (no result backend)."""
    name = EXECUTE_GATED_TASK if job.gated else EXECUTE_TASK
    task_id = str(job.id)
    root_id, parent_id = lineage
    message = app.amqp.create_task_message(
        task_id,
        name,
        [task_id],
        {},
        countdown=countdown,
        reply_to=app.thread_oid,
        root_id=root_id,
        parent_id=parent_id,
        argsrepr=f"['{task_id}']",
        kwargsrepr="{}",
        ignore_result=None,
    )
    return name, message, PRIORITY_STEPS.get(job.priority, PRIORITY_STEPS["normal"])


def _publish(producer: Any, name: str, message: Any, queue: str, priority: int) -> None:
    """What Celery's `send_task_message` does for a direct queue: the anonymous exchange, the
    queue's name as routing key, durable, JSON, and its publish signals."""
    headers, properties, body, _ = message
    _before_publish(name, body, headers, properties, queue)
    producer.publish(
        body,
        exchange="",
        routing_key=queue,
        serializer="json",
        headers=headers,
        priority=priority,
        delivery_mode=2,
        retry=False,
        **properties,
    )
    _after_publish(name, body, headers, queue)


# The API publishes on its event loop: kombu's producer is synchronous, so the same messages
# go out as kombu's Redis transport stores them (`_redis_entry`), by redis-py's asyncio client.
@dataclass
class _AsyncBroker:
    client: aioredis.Redis | None = None


_async = _AsyncBroker()


async def open_async() -> None:
    """Make this process's asyncio Redis client (in its event loop), with the broker's
    socket timeouts. Nothing connects until the first publish."""
    await close_async()
    options = app.conf.broker_transport_options
    changed = sorted(set(options) & {"sep", "priority_steps", "global_keyprefix"})
    if changed:  # _redis_entry writes kombu's default layout
        raise RuntimeError(f"broker_transport_options {changed} are not supported")
    _async.client = aioredis.Redis.from_url(
        get_settings().redis_url,
        socket_timeout=options.get("socket_timeout"),
        socket_connect_timeout=options.get("socket_connect_timeout"),
        # Once more on a broken connection (Redis restarted under the pool), never after a
        # timeout: a request does not wait on a hung broker more than once (the sweep sends).
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )


async def close_async() -> None:
    client, _async.client = _async.client, None
    if client is not None:
        await client.aclose()


async def publish_async(jobs: Sequence[Job]) -> int:
    """publish_many on the event loop (no countdown, no parent task): the same messages, in
    one pipeline round trip; how many were sent, 0 when the broker did not take them (logged:
    the sweep will publish them)."""
    client = _async.client
    if client is None:
        raise RuntimeError("the async broker client is not open: the app opens it at startup")
    if not jobs:
        return 0
    queue = get_settings().runs_queue
    messages = [_message(job, None, (None, None)) for job in jobs]
    try:
        async with client.pipeline(transaction=False) as pipe:
            for name, message, priority in messages:
                headers, properties, body, _ = message
                _before_publish(name, body, headers, properties, queue)
                pipe.lpush(*_redis_entry(message, queue, priority))
            await pipe.execute()
    except (RedisError, OSError) as error:
        log.warning("broker did not take run(s), the sweep will publish them: %s", error)
        return 0
    for name, (headers, _, body, _), _ in messages:
        _after_publish(name, body, headers, queue)
    return len(jobs)


def _redis_entry(message: Any, queue: str, priority: int) -> tuple[str, str]:
    """The list and the payload kombu's Redis transport LPUSHes when its producer publishes
    `message` as `_publish` does: the body serialized as JSON, then base64 in an envelope of
    the headers and properties, with a delivery tag and where it was routed."""
    headers, properties, body, _ = message
    content_type, content_encoding, data = serialize(body, serializer="json")  # type: ignore[no-untyped-call]
    envelope = {
        "body": base64.b64encode(data.encode() if isinstance(data, str) else data).decode(),
        "content-encoding": content_encoding,
        "content-type": content_type,
        "headers": headers,
        "properties": {
            **properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": priority,
            "body_encoding": "base64",
            "delivery_tag": str(uuid4()),
        },
    }
    return _priority_list(queue, priority), json.dumps(envelope)


def _before_publish(name: str, body: Any, headers: Any, properties: Any, queue: str) -> None:
    signals.before_task_publish.send(
        sender=name,
        body=body,
        exchange="",
        routing_key=queue,
        declare=[],
        headers=headers,
        properties=properties,
        retry_policy=_RETRY_POLICY,
    )


def _after_publish(name: str, body: Any, headers: Any, queue: str) -> None:
    signals.after_task_publish.send(
        sender=name, body=body, headers=headers, exchange="", routing_key=queue
    )


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
    return [_priority_list(queue, step) for step in _STEPS]


def _priority_list(queue: str, step: int) -> str:
    return queue if step == 0 else f"{queue}{_SEPARATOR}{step}"


def queue_depth(client: redis.Redis, queue: str) -> int:
    """Messages waiting in a queue, over all its priority lists (one round trip)."""
    with client.pipeline(transaction=False) as pipe:
        for name in queue_lists(queue):
            pipe.llen(name)
        return sum(int(size) for size in pipe.execute())
