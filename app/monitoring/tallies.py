"""Every SQL statement about run_tallies: the running sums that triggers on
pipeline_executions keep per workspace (see migration 0005). Nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from app.models import run_tallies as tallies

SHARDS = 8  # as the triggers spread their sums (migration 0005)

# Adds to a counter of each named run's workspace, in the shard the triggers would use.
_ADD_PER_RUN = f"""
INSERT INTO run_tallies AS t (workspace_id, name, shard, value)
SELECT workspace_id, :name, hashtext(id::text) & {SHARDS - 1}, count(*)
  FROM pipeline_executions WHERE id = ANY(:ids)
 GROUP BY 1, 3 ORDER BY 1, 3
ON CONFLICT (workspace_id, name, shard) DO UPDATE SET value = t.value + excluded.value
"""


def sums(conn: Connection, workspace_id: UUID) -> dict[str, float]:
    """Every tally of the workspace, its shards added up: a few hundred rows at most,
    read from the primary key, whatever the number of runs stored."""
    statement = (
        sa.select(tallies.c.name, sa.func.sum(tallies.c.value))
        .where(tallies.c.workspace_id == workspace_id)
        .group_by(tallies.c.name)
    )
    return {name: float(value) for name, value in conn.execute(statement)}


def add_per_run(conn: Connection, name: str, run_ids: Sequence[UUID]) -> None:
    """Count one `name` event for each run, in the run's workspace."""
    if run_ids:
        conn.execute(sa.text(_ADD_PER_RUN), {"name": name, "ids": list(run_ids)})
