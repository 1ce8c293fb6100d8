"""The set-based statements of bulk cancel and retry (app/runs/bulk.py). Nothing commits.

Each changes runs in one statement (see app/runs/store.py on the tally triggers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Row

from app.models import pipeline_executions as runs
from app.states import CLAIMABLE, LIVE, RunStatus

if TYPE_CHECKING:
    from app.runs.bulk import Selection


def _matching(
    table: sa.FromClause, workspace_id: UUID, selection: Selection
) -> list[sa.ColumnElement[bool]]:
    columns = table.c
    conditions = [columns.workspace_id == workspace_id]
    if selection.stream_id is not None:
        conditions.append(columns.stream_id == selection.stream_id)
    if selection.statuses:
        conditions.append(columns.status.in_([status.value for status in selection.statuses]))
    if selection.run_type is not None:
        conditions.append(columns.run_type == selection.run_type.value)
    if selection.created_before is not None:
        conditions.append(columns.created_at < selection.created_before)
    if selection.completed_after is not None:
        conditions.append(columns.completed_at > selection.completed_after)
    return conditions


def cancel(
    conn: Connection, workspace_id: UUID, selection: Selection, after: UUID | None, limit: int
) -> Sequence[Row[Any]]:
    """Up to `limit` matching live runs, by id after `after`: waiting ones end cancelled,
    running ones are asked to stop. Returns each run touched, with its status after. The
    rows are locked in id order, and each batch is its own short transaction."""
    live = [status.value for status in LIVE]
    batch = (
        sa.select(runs.c.id)
        .where(*_matching(runs, workspace_id, selection), runs.c.status.in_(live))
        .order_by(runs.c.id)
        .limit(limit)
        .with_for_update()
    )
    if after is not None:
        batch = batch.where(runs.c.id > after)
    chosen = batch.cte("chosen")
    waiting = runs.c.status.in_([status.value for status in CLAIMABLE])
    now = sa.func.now()
    statement = (
        sa.update(runs)
        .where(runs.c.id == chosen.c.id, runs.c.status.in_(live))
        .values(
            status=sa.case((waiting, RunStatus.CANCELLED.value), else_=runs.c.status),
            cancel_requested_at=sa.func.coalesce(runs.c.cancel_requested_at, now),
            completed_at=sa.case((waiting, now), else_=runs.c.completed_at),
            error=sa.case((waiting, "cancelled on request"), else_=runs.c.error),
            error_type=sa.case((waiting, "cancelled"), else_=runs.c.error_type),
            waiting_for=sa.case((waiting, sa.null()), else_=runs.c.waiting_for),
            updated_at=now,
        )
        .returning(runs.c.id, runs.c.status, runs.c.stream_id, runs.c.gated, runs.c.limit_keys)
    )
    return conn.execute(statement).all()


def lock_retries(conn: Connection, workspace_id: UUID) -> None:
    """Bulk retries of a workspace take turns (until the transaction ends): each one's look
    for runs not retried yet then sees what the one before it committed."""
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"runway:bulk-retry:{workspace_id}"},
    )


def retryable(
    conn: Connection, workspace_id: UUID, selection: Selection, limit: int
) -> Sequence[Row[Any]]:
    """Matching ended runs never retried before, oldest first, locked (a single retry in
    flight meanwhile is skipped). Take lock_retries first: no run is retried twice."""
    original, retry = runs.alias("original"), runs.alias("retry")
    retried = sa.select(retry.c.id).where(retry.c.retry_of == original.c.id).exists()
    statement = (
        sa.select(original)
        .where(*_matching(original, workspace_id, selection), ~retried)
        .order_by(original.c.completed_at, original.c.id)
        .limit(limit)
        .with_for_update(of=original, skip_locked=True)
    )
    return conn.execute(statement).all()


def insert_runs(conn: Connection, values: Sequence[Mapping[str, Any]]) -> Sequence[Row[Any]]:
    if not values:
        return []
    statement = insert(runs).values(list(values)).returning(*runs.c)
    return conn.execute(statement).all()
