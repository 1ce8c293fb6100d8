"""Every SQL statement about webhooks and their deliveries, but the ones that write events
(app/webhooks/outbox.py). Nothing here commits."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from app.models import webhook_deliveries as deliveries
from app.models import webhooks, workspaces

# What GET /webhooks shows: never the secret.
PUBLIC: tuple[sa.ColumnElement[Any], ...] = (
    webhooks.c.id,
    webhooks.c.url,
    webhooks.c.events,
    webhooks.c.description,
    webhooks.c.created_at,
)


def lock_workspace(conn: Connection, workspace_id: UUID) -> None:
    """Serialise the transactions that add webhooks to a workspace (its count is capped)."""
    conn.execute(
        sa.select(workspaces.c.id).where(workspaces.c.id == workspace_id).with_for_update()
    )


def count(conn: Connection, workspace_id: UUID) -> int:
    statement = sa.select(sa.func.count()).where(webhooks.c.workspace_id == workspace_id)
    return int(conn.execute(statement).scalar_one())


def create(
    conn: Connection,
    workspace_id: UUID,
    url: str,
    events: Sequence[str],
    description: str | None,
    secret: str,
) -> Row[Any]:
    statement = (
        sa.insert(webhooks)
        .values(
            workspace_id=workspace_id,
            url=url,
            events=list(events),
            description=description,
            secret=secret,
        )
        .returning(*PUBLIC)
    )
    return conn.execute(statement).one()


def list_all(conn: Connection, workspace_id: UUID) -> Sequence[Row[Any]]:
    statement = (
        sa.select(*PUBLIC)
        .where(webhooks.c.workspace_id == workspace_id)
        .order_by(webhooks.c.created_at, webhooks.c.id)
    )
    return conn.execute(statement).all()


def get(conn: Connection, workspace_id: UUID, webhook_id: UUID) -> Row[Any] | None:
    statement = sa.select(*PUBLIC).where(
        webhooks.c.id == webhook_id, webhooks.c.workspace_id == workspace_id
    )
    return conn.execute(statement).first()


def delete(conn: Connection, workspace_id: UUID, webhook_id: UUID) -> bool:
    """Remove a webhook; its deliveries go with it (pending ones are never sent)."""
    statement = sa.delete(webhooks).where(
        webhooks.c.id == webhook_id, webhooks.c.workspace_id == workspace_id
    )
    return conn.execute(statement).rowcount > 0


def recent_deliveries(conn: Connection, webhook_id: UUID, limit: int) -> Sequence[Row[Any]]:
    statement = (
        sa.select(deliveries)
        .where(deliveries.c.webhook_id == webhook_id)
        .order_by(deliveries.c.created_at.desc(), deliveries.c.event_id)
        .limit(limit)
    )
    return conn.execute(statement).all()


# Delivery. A claim takes, for each webhook that is neither busy here nor backing off, its
# soonest due delivery, counts the attempt and leases the row for `lease` seconds (a beat
# that dies while sending leaves it to be sent again then, with the same event id).
_CLAIM = sa.text("""
WITH due AS (
    SELECT d.webhook_id, d.event_id, d.next_attempt_at, d.created_at
      FROM webhook_deliveries d
     WHERE d.status = 'pending' AND d.next_attempt_at <= now()
       AND NOT (d.webhook_id = ANY(CAST(:busy AS uuid[])))
       AND NOT EXISTS (SELECT 1 FROM webhooks backing_off
                        WHERE backing_off.id = d.webhook_id
                          AND backing_off.backoff_until > now())
     ORDER BY d.next_attempt_at
     LIMIT :scan
       FOR UPDATE SKIP LOCKED),
firsts AS (
    SELECT DISTINCT ON (webhook_id) webhook_id, event_id, next_attempt_at
      FROM due ORDER BY webhook_id, next_attempt_at, created_at),
chosen AS (SELECT * FROM firsts ORDER BY next_attempt_at LIMIT :limit)
UPDATE webhook_deliveries d
   SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => :lease)
  FROM chosen, webhooks w
 WHERE d.webhook_id = chosen.webhook_id AND d.event_id = chosen.event_id
   AND w.id = d.webhook_id
RETURNING d.webhook_id, d.event_id, d.type, d.payload, d.created_at, d.attempts,
          w.workspace_id, w.url, w.secret, w.failures
""")


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver one event to one webhook, as claimed."""

    webhook_id: UUID
    event_id: UUID
    type: str
    payload: dict[str, Any]
    created_at: datetime
    attempt: int
    workspace_id: UUID
    url: str
    secret: str
    failures: int  # the webhook's failed attempts in a row before this one

    def __repr__(self) -> str:  # never the secret, nor the URL (it may hold a token)
        return f"Delivery({self.type} {self.event_id} to webhook {self.webhook_id})"


def claim_due(
    conn: Connection, busy: Collection[UUID], limit: int, lease_seconds: float
) -> list[Delivery]:
    parameters = {
        "busy": list(busy),
        "limit": limit,
        "scan": max(100, 4 * limit),
        "lease": lease_seconds,
    }
    return [Delivery(*row) for row in conn.execute(_CLAIM, parameters)]


# The outcome of an attempt, fenced by its attempt number: a slow attempt whose lease ran out
# (and was claimed again) does not overwrite the newer attempt's record.
_DELIVERED = sa.text("""
WITH done AS (
    UPDATE webhook_deliveries
       SET status = 'delivered', delivered_at = now(), next_attempt_at = NULL,
           last_status_code = :code, last_error = NULL
     WHERE webhook_id = :webhook_id AND event_id = :event_id
       AND status = 'pending' AND attempts = :attempt
    RETURNING webhook_id)
UPDATE webhooks w SET failures = 0, backoff_until = NULL
  FROM done WHERE w.id = done.webhook_id AND (w.failures > 0 OR w.backoff_until IS NOT NULL)
""")

_NOT_DELIVERED = sa.text("""
WITH tried AS (
    UPDATE webhook_deliveries
       SET status = CASE WHEN attempts >= :max_attempts THEN 'failed' ELSE 'pending' END,
           next_attempt_at = CASE WHEN attempts >= :max_attempts THEN NULL
                                  ELSE now() + make_interval(secs => :retry_in) END,
           last_status_code = :code, last_error = :error
     WHERE webhook_id = :webhook_id AND event_id = :event_id
       AND status = 'pending' AND attempts = :attempt
    RETURNING webhook_id)
UPDATE webhooks w
   SET failures = w.failures + 1, backoff_until = now() + make_interval(secs => :backoff)
  FROM tried WHERE w.id = tried.webhook_id
""")


def record_delivered(conn: Connection, delivery: Delivery, code: int) -> None:
    conn.execute(_DELIVERED, _key(delivery) | {"code": code})


def record_not_delivered(
    conn: Connection,
    delivery: Delivery,
    *,
    code: int | None,
    error: str,
    max_attempts: int,
    retry_in: float,
    backoff: float,
) -> None:
    """Another attempt in `retry_in` seconds, or `failed` once attempts are used up; either
    way the webhook backs off for `backoff` seconds."""
    parameters = _key(delivery) | {
        "code": code,
        "error": error,
        "max_attempts": max_attempts,
        "retry_in": retry_in,
        "backoff": backoff,
    }
    conn.execute(_NOT_DELIVERED, parameters)


def _key(delivery: Delivery) -> dict[str, Any]:
    return {
        "webhook_id": delivery.webhook_id,
        "event_id": delivery.event_id,
        "attempt": delivery.attempt,
    }


# /metrics: a workspace's deliveries by status, and the age of the oldest pending one.
_STATS = sa.text("""
SELECT d.status, count(*),
       extract(epoch FROM now() - min(d.created_at) FILTER (WHERE d.status = 'pending'))
  FROM webhooks w JOIN webhook_deliveries d ON d.webhook_id = w.id
 WHERE w.workspace_id = :workspace_id
 GROUP BY d.status
""")


@dataclass(frozen=True)
class DeliveryStats:
    by_status: dict[str, int]
    oldest_pending_seconds: float


def delivery_stats(conn: Connection, workspace_id: UUID) -> DeliveryStats:
    by_status: dict[str, int] = {}
    oldest = 0.0
    for status, number, age in conn.execute(_STATS, {"workspace_id": workspace_id}):
        by_status[status] = number
        oldest = max(oldest, float(age or 0))
    return DeliveryStats(by_status, oldest)


# Retention: the oldest deliveries first, in bounded batches, by ctid, as runs and ticks are.
_DELETE_DELIVERIES = sa.text("""
WITH doomed AS (
    SELECT ctid FROM webhook_deliveries
     WHERE created_at < :before AND created_at >= :after
     ORDER BY created_at
     LIMIT :limit
       FOR UPDATE SKIP LOCKED),
gone AS (
    DELETE FROM webhook_deliveries WHERE ctid = ANY(ARRAY(SELECT ctid FROM doomed))
    RETURNING created_at)
SELECT count(*), max(created_at) FROM gone
""")


def delete_deliveries(
    conn: Connection, before: datetime, after: datetime, limit: int
) -> tuple[int, datetime | None]:
    """Delete up to `limit` deliveries of events from [after, before), oldest first."""
    parameters = {"before": before, "after": after, "limit": limit}
    number, last = conn.execute(_DELETE_DELIVERIES, parameters).one()
    return number, last
