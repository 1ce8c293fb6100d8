"""The SQL the console reads with (and its one secret); nothing commits.

Every statement is bounded by a LIMIT and served by an index, so a page costs the same for a
workspace of ten streams as for one of ten thousand streams and a million runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Row

from app.models import console_secrets, research_streams
from app.models import pipeline_executions as runs
from app.states import RunStatus

STREAM_COLUMNS: tuple[sa.Column[Any], ...] = (
    research_streams.c.id,
    research_streams.c.name,
    research_streams.c.pipeline,
    research_streams.c.schedule_config,
    research_streams.c.next_scheduled_run,
    research_streams.c.paused_reason,
)


_RUNNING: tuple[sa.Column[Any], ...] = (
    runs.c.id,
    runs.c.stream_id,
    runs.c.progress,
    runs.c.started_at,
    runs.c.attempt,
)
_OVERDUE: tuple[sa.Column[Any], ...] = (
    runs.c.id,
    runs.c.stream_id,
    runs.c.scheduled_for,
    runs.c.waiting_for,
)


def secret(conn: Connection, candidate: str) -> str:
    """The stored secret; `candidate` becomes it if there is none yet (the first caller wins)."""
    conn.execute(insert(console_secrets).values(id=1, secret=candidate).on_conflict_do_nothing())
    stored: str = conn.execute(
        sa.select(console_secrets.c.secret).where(console_secrets.c.id == 1)
    ).scalar_one()
    return stored


def running(conn: Connection, workspace_id: UUID, limit: int) -> Sequence[Row[Any]]:
    """The workspace's running runs, latest started first (along ix_pipeline_executions_live)."""
    statement = (
        sa.select(*_RUNNING)
        .where(runs.c.status == RunStatus.RUNNING, runs.c.workspace_id == workspace_id)
        .order_by(runs.c.started_at.desc())
        .limit(limit)
    )
    return conn.execute(statement).all()


def paused(conn: Connection, workspace_id: UUID, limit: int) -> Sequence[Row[Any]]:
    statement = (
        sa.select(*STREAM_COLUMNS)
        .where(
            research_streams.c.workspace_id == workspace_id,
            research_streams.c.schedule_config["enabled"].astext == "false",
        )
        .order_by(research_streams.c.updated_at.desc())
        .limit(limit)
    )
    return conn.execute(statement).all()


def next_scheduled(conn: Connection, workspace_id: UUID, limit: int) -> Sequence[Row[Any]]:
    statement = (
        sa.select(*STREAM_COLUMNS)
        .where(
            research_streams.c.workspace_id == workspace_id,
            research_streams.c.next_scheduled_run.is_not(None),
        )
        .order_by(research_streams.c.next_scheduled_run)
        .limit(limit)
    )
    return conn.execute(statement).all()


# Streams whose latest ended run failed, among those with a failure since `since` (the
# newest failures, along ix_pipeline_executions_workspace_ended).
_FAILING = sa.text("""
SELECT s.id, s.name, last.id AS run_id, last.completed_at, last.error
  FROM (SELECT DISTINCT stream_id
          FROM (SELECT stream_id FROM pipeline_executions
                 WHERE workspace_id = :workspace_id AND status = 'failed'
                   AND completed_at IS NOT NULL AND completed_at >= :since
                 ORDER BY completed_at DESC LIMIT 200) failed) f
  JOIN research_streams s ON s.id = f.stream_id
 CROSS JOIN LATERAL (
        SELECT e.id, e.status, e.completed_at, e.error FROM pipeline_executions e
         WHERE e.stream_id = s.id AND e.status IN ('completed', 'failed', 'cancelled')
         ORDER BY e.created_at DESC LIMIT 1) last
 WHERE last.status = 'failed'
 ORDER BY last.completed_at DESC
 LIMIT :limit
""")


def failing(
    conn: Connection, workspace_id: UUID, since: datetime, limit: int
) -> Sequence[Row[Any]]:
    parameters = {"workspace_id": workspace_id, "since": since, "limit": limit}
    return conn.execute(_FAILING, parameters).all()


_TROUBLE = sa.text("""
SELECT t.stream_id, s.name, t.scheduled_for, t.outcome, t.reason
  FROM schedule_ticks t JOIN research_streams s ON s.id = t.stream_id
 WHERE t.outcome IN ('missed', 'skipped_overlap') AND t.created_at >= :since
   AND s.workspace_id = :workspace_id
 ORDER BY t.created_at DESC
 LIMIT :limit
""")


def trouble(
    conn: Connection, workspace_id: UUID, since: datetime, limit: int
) -> Sequence[Row[Any]]:
    """Slots missed or skipped since `since` (along ix_schedule_ticks_trouble)."""
    parameters = {"workspace_id": workspace_id, "since": since, "limit": limit}
    return conn.execute(_TROUBLE, parameters).all()


def overdue(
    conn: Connection, workspace_id: UUID, before: datetime, limit: int
) -> Sequence[Row[Any]]:
    """Scheduled runs still waiting to start whose slot was before `before`, oldest slot
    first (among the live runs, along ix_pipeline_executions_live)."""
    statement = (
        sa.select(*_OVERDUE)
        .where(
            runs.c.status.in_((RunStatus.PENDING, RunStatus.RETRYING)),
            runs.c.workspace_id == workspace_id,
            runs.c.run_type == "scheduled",
            runs.c.scheduled_for < before,
        )
        .order_by(runs.c.scheduled_for)
        .limit(limit)
    )
    return conn.execute(statement).all()


_STRIPS = sa.text("""
SELECT s.id AS stream_id, r.id, r.status
  FROM unnest(CAST(:stream_ids AS uuid[])) AS s(id)
 CROSS JOIN LATERAL (
        SELECT e.id, e.status, e.created_at FROM pipeline_executions e
         WHERE e.stream_id = s.id ORDER BY e.created_at DESC LIMIT :length) r
 ORDER BY s.id, r.created_at
""")


def strips(conn: Connection, stream_ids: Sequence[UUID], length: int) -> dict[UUID, list[Row[Any]]]:
    """Each stream's last `length` runs (id, status), oldest first (along
    ix_pipeline_executions_stream_created)."""
    found: dict[UUID, list[Row[Any]]] = {stream_id: [] for stream_id in stream_ids}
    if stream_ids:
        parameters = {"stream_ids": list(stream_ids), "length": length}
        for row in conn.execute(_STRIPS, parameters):
            found[row.stream_id].append(row)
    return found


def stream_names(
    conn: Connection, workspace_id: UUID, stream_ids: Sequence[UUID]
) -> dict[UUID, str]:
    if not stream_ids:
        return {}
    statement = sa.select(research_streams.c.id, research_streams.c.name).where(
        research_streams.c.workspace_id == workspace_id,
        research_streams.c.id.in_(list(set(stream_ids))),
    )
    return {row.id: row.name for row in conn.execute(statement)}
