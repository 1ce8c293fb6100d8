"""Every SQL statement about webhooks and their deliveries, but the ones that write events
(app/webhooks/outbox.py). Nothing here commits."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from app.models import webhook_deliveries as deliveries
from app.models import webhooks, workspaces
from app.monitoring.tallies import SHARDS

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
    statement = sa.select(workspaces.c.id).where(workspaces.c.id == workspace_id)
    # NO KEY UPDATE: inserts that refer to the workspace (runs, ticks) do not wait on it.
    conn.execute(statement.with_for_update(key_share=True))


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


# A delivery that ends (delivered, or failed for good) adds one to its workspace's
# `webhooks:delivered` or `webhooks:failed` tally, in the statement that ends it (/metrics):
# one upsert per tally row, in one order, as app/monitoring/tallies.py adds.
_TALLY = f"""
INSERT INTO run_tallies AS t (workspace_id, name, shard, value)
SELECT w.workspace_id, 'webhooks:' || ended.status,
       hashtext(ended.event_id::text) & {SHARDS - 1}, count(*)
  FROM ended JOIN webhooks w ON w.id = ended.webhook_id
 WHERE ended.status <> 'pending'
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (workspace_id, name, shard) DO UPDATE SET value = t.value + excluded.value
"""

# Delivery. A claim finds the webhooks with pending deliveries (a loose scan of the pending
# index: one probe per such webhook, however long a dead endpoint's backlog) and locks those
# that are neither sending (`sending_until`: an attempt in flight, from any beat) nor backing
# off nor busy here (a webhook being deleted is skipped). It takes each one's oldest due
# delivery, at most `room` (or `per_workspace`) per workspace here, counts the attempt, and
# leases the delivery and its webhook for `lease` seconds: a beat that dies while sending
# leaves both to be taken again then, the same event id. A delivery whose attempts are used
# up without an outcome (its senders kept dying) ends failed. Locks are taken webhook first,
# then delivery, as a webhook's DELETE takes them (its cascade), so the two never deadlock.
_CLAIM = sa.text(f"""
WITH RECURSIVE hooks(webhook_id) AS (
    (SELECT webhook_id FROM webhook_deliveries WHERE status = 'pending'
      ORDER BY webhook_id LIMIT 1)
    UNION ALL
    SELECT (SELECT d.webhook_id FROM webhook_deliveries d
             WHERE d.status = 'pending' AND d.webhook_id > hooks.webhook_id
             ORDER BY d.webhook_id LIMIT 1)
      FROM hooks WHERE hooks.webhook_id IS NOT NULL),
ready AS (
    SELECT w.id, w.workspace_id FROM webhooks w
     WHERE w.id IN (SELECT webhook_id FROM hooks WHERE webhook_id IS NOT NULL)
       AND (w.backoff_until IS NULL OR w.backoff_until <= now())
       AND (w.sending_until IS NULL OR w.sending_until <= now())
       AND NOT (w.id = ANY(CAST(:busy AS uuid[])))
       FOR NO KEY UPDATE SKIP LOCKED),
candidates AS (
    SELECT first.webhook_id, first.event_id, first.created_at, ready.workspace_id,
           row_number() OVER (PARTITION BY ready.workspace_id ORDER BY first.created_at) AS nth
      FROM ready
     CROSS JOIN LATERAL (
           SELECT d.webhook_id, d.event_id, d.created_at FROM webhook_deliveries d
            WHERE d.webhook_id = ready.id AND d.status = 'pending' AND d.next_attempt_at <= now()
            ORDER BY d.created_at LIMIT 1
              FOR UPDATE SKIP LOCKED) first),
chosen AS (
    SELECT candidates.webhook_id, candidates.event_id
      FROM candidates
      LEFT JOIN unnest(CAST(:crowded AS uuid[]), CAST(:room AS int[])) AS room(workspace_id, n)
        ON room.workspace_id = candidates.workspace_id
     WHERE candidates.nth <= coalesce(room.n, :per_workspace)
     ORDER BY candidates.created_at
     LIMIT :limit),
ended AS (
UPDATE webhook_deliveries d
   SET attempts = d.attempts + CASE WHEN d.attempts < :max_attempts THEN 1 ELSE 0 END,
       status = CASE WHEN d.attempts < :max_attempts THEN 'pending' ELSE 'failed' END,
       next_attempt_at = CASE WHEN d.attempts < :max_attempts
                              THEN now() + make_interval(secs => :lease) END,
       last_error = CASE WHEN d.attempts < :max_attempts THEN d.last_error
                         ELSE coalesce(d.last_error, 'no outcome recorded for its attempts') END
  FROM chosen, webhooks w
 WHERE d.webhook_id = chosen.webhook_id AND d.event_id = chosen.event_id
   AND w.id = d.webhook_id
RETURNING d.status, d.webhook_id, d.event_id, d.type, d.payload, d.created_at, d.attempts,
          w.workspace_id, w.url, w.secret, w.failures),
leased AS (
    UPDATE webhooks w SET sending_until = now() + make_interval(secs => :lease)
      FROM ended WHERE w.id = ended.webhook_id AND ended.status = 'pending'),
tallied AS ({_TALLY})
SELECT * FROM ended
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


@dataclass(frozen=True)
class Room:
    """How many more deliveries a claim may take: in all, and per workspace."""

    total: int
    per_workspace: int
    crowded: Mapping[UUID, int]  # workspaces with attempts in flight: the room they have left


def claim_due(
    conn: Connection, busy: Collection[UUID], room: Room, lease_seconds: float, max_attempts: int
) -> list[Delivery]:
    parameters = {
        "busy": list(busy),
        "limit": room.total,
        "per_workspace": room.per_workspace,
        "crowded": list(room.crowded),
        "room": list(room.crowded.values()),
        "lease": lease_seconds,
        "max_attempts": max_attempts,
    }
    rows = conn.execute(_CLAIM, parameters).all()
    return [Delivery(*row[1:]) for row in rows if row[0] == "pending"]


# The outcome of an attempt, fenced by its attempt number: a slow attempt whose lease ran out
# (and was claimed again) neither overwrites the newer attempt's record nor frees its
# webhook. The webhook is locked first (see _CLAIM).
_HOOK = """
hook AS (SELECT id FROM webhooks WHERE id = :webhook_id FOR NO KEY UPDATE),
ended AS (
    UPDATE webhook_deliveries
       SET {outcome}
     WHERE webhook_id = (SELECT id FROM hook) AND event_id = :event_id
       AND status = 'pending' AND attempts = :attempt
    RETURNING webhook_id, event_id, status)"""

_DELIVERED = sa.text(f"""
WITH {
    _HOOK.format(
        outcome='''status = 'delivered', delivered_at = now(),
           next_attempt_at = NULL, last_status_code = :code, last_error = NULL'''
    )
},
healthy AS (
    UPDATE webhooks w SET sending_until = NULL, failures = 0, backoff_until = NULL
      FROM ended WHERE w.id = ended.webhook_id)
{_TALLY}
""")

_NOT_DELIVERED = sa.text(f"""
WITH {
    _HOOK.format(
        outcome='''status = CASE WHEN attempts >= :max_attempts THEN 'failed'
                         ELSE 'pending' END,
           next_attempt_at = CASE WHEN attempts >= :max_attempts THEN NULL
                                  ELSE now() + make_interval(secs => :retry_in) END,
           last_status_code = :code, last_error = :error'''
    )
},
backing_off AS (
    UPDATE webhooks w
       SET sending_until = NULL, failures = w.failures + 1,
           backoff_until = now() + make_interval(secs => :backoff)
      FROM ended WHERE w.id = ended.webhook_id)
{_TALLY}
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


# /metrics: a workspace's pending deliveries, and the age of its oldest one (the pending
# index, per webhook: the oldest is its first entry).
_PENDING = sa.text("""
SELECT coalesce(sum(pending.n), 0),
       coalesce(extract(epoch FROM now() - min(pending.oldest)), 0)
  FROM webhooks w
 CROSS JOIN LATERAL (SELECT count(*) AS n, min(d.created_at) AS oldest
                       FROM webhook_deliveries d
                      WHERE d.webhook_id = w.id AND d.status = 'pending') pending
 WHERE w.workspace_id = :workspace_id
""")


@dataclass(frozen=True)
class Pending:
    count: int
    oldest_seconds: float  # 0 when none is pending


def pending(conn: Connection, workspace_id: UUID) -> Pending:
    number, oldest = conn.execute(_PENDING, {"workspace_id": workspace_id}).one()
    return Pending(int(number), float(oldest))


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
