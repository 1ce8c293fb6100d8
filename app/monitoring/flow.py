"""What flow control holds back, for /status and /metrics: the runs that wait (along the
partial index ix_pipeline_executions_waiting) and each limit key's use. Nothing commits."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from app.limits import store as limits

# The WHERE clause is the index's predicate, so Postgres reads only the waiting runs.
WAITING = sa.text("""
SELECT status, count(*) FROM pipeline_executions
 WHERE workspace_id = :ws AND status IN ('pending', 'retrying') AND waiting_for IS NOT NULL
 GROUP BY status
""")


@dataclass(frozen=True)
class KeyUse:
    key: str
    running: int
    waiting: int


def waiting_by_status(conn: Connection, workspace_id: UUID) -> dict[str, int]:
    """Pending and retrying runs that wait for a limit, the workspace's cap or an earlier
    run (`waiting_for` set), by status; a status with none is left out."""
    return {status: count for status, count in conn.execute(WAITING, {"ws": workspace_id})}


def key_use(conn: Connection, workspace_id: UUID) -> list[KeyUse]:
    """Running and waiting runs of every key that has a limit, by key."""
    keys = [row.key for row in limits.list_for(conn, workspace_id)]
    found = limits.usage(conn, workspace_id, keys)
    return [KeyUse(key, *found.get(key, (0, 0))) for key in keys]
