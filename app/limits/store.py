"""Every SQL statement about the `limits` table, and the counts of the runs that use a key.
Nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from app.models import limits

if TYPE_CHECKING:
    from app.limits.service import Rate

_COLUMNS = (
    limits.c.key,
    limits.c.max_concurrent,
    limits.c.rate_count,
    limits.c.rate_period_seconds,
)


class LimitRow(Protocol):
    key: str
    max_concurrent: int | None
    rate_count: int | None
    rate_period_seconds: float


def upsert(
    conn: Connection, workspace_id: UUID, key: str, max_concurrent: int | None, rate: Rate | None
) -> None:
    """Replace the key's caps. The starts its rate counted stay, trimmed to the new count."""
    values: dict[str, Any] = {
        "max_concurrent": max_concurrent,
        "rate_count": None if rate is None else rate.count,
        "rate_period_seconds": None if rate is None else rate.period_seconds,
        "updated_at": sa.func.now(),
    }
    statement = insert(limits).values(workspace_id=workspace_id, key=key, **values)
    kept_starts = (
        sa.text(
            "limits.recent_starts[greatest(1, cardinality(limits.recent_starts) - :n + 1):]"
        ).bindparams(n=rate.count)
        if rate is not None
        else sa.text("limits.recent_starts")  # kept: a rate set again counts them
    )
    statement = statement.on_conflict_do_update(
        index_elements=[limits.c.workspace_id, limits.c.key],
        set_={**{name: statement.excluded[name] for name in values}, "recent_starts": kept_starts},
    )
    conn.execute(statement)


def get(conn: Connection, workspace_id: UUID, key: str) -> LimitRow | None:
    statement = sa.select(*_COLUMNS).where(
        limits.c.workspace_id == workspace_id, limits.c.key == key
    )
    row: LimitRow | None = conn.execute(statement).first()
    return row


def list_for(conn: Connection, workspace_id: UUID) -> Sequence[LimitRow]:
    statement = (
        sa.select(*_COLUMNS).where(limits.c.workspace_id == workspace_id).order_by(limits.c.key)
    )
    rows: Sequence[LimitRow] = conn.execute(statement).all()
    return rows


def delete(conn: Connection, workspace_id: UUID, key: str) -> bool:
    statement = sa.delete(limits).where(limits.c.workspace_id == workspace_id, limits.c.key == key)
    return conn.execute(statement).rowcount > 0


# Runs of a workspace that name each key: running, and waiting (for whatever reason). Both
# sets are small partial indexes' worth (ix_pipeline_executions_holding / _waiting).
_USAGE = sa.text("""
SELECT k.key,
       count(*) FILTER (WHERE p.status = 'running') AS running,
       count(*) FILTER (WHERE p.waiting_for IS NOT NULL) AS waiting
  FROM pipeline_executions p
 CROSS JOIN LATERAL unnest(p.limit_keys) AS k(key)
 WHERE p.workspace_id = :workspace_id AND p.gated AND k.key = ANY(:keys)
   AND ((p.status = 'running' AND p.waiting_for IS NULL)
        OR (p.status IN ('pending', 'retrying') AND p.waiting_for IS NOT NULL))
 GROUP BY k.key
""")


def usage(conn: Connection, workspace_id: UUID, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
    """key -> (running, waiting), for the keys that have any."""
    if not keys:
        return {}
    rows = conn.execute(_USAGE, {"workspace_id": workspace_id, "keys": list(keys)})
    return {key: (running, waiting) for key, running, waiting in rows}
