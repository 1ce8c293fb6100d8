"""Every SQL statement about runs. Each state change is one conditional UPDATE; nothing commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.engine import Connection, Row

from app.models import pipeline_executions as runs
from app.models import research_streams as streams
from app.runs.outcome import Outcome
from app.states import CLAIMABLE, TERMINAL, TRANSITIONS, RunStatus, sources_of

_stream_name = sa.select(streams.c.name).where(streams.c.id == runs.c.stream_id).scalar_subquery()
COLUMNS = (*runs.c,)


def insert_run(conn: Connection, values: Mapping[str, Any]) -> Row[Any] | None:
    """Insert a run; None when its idempotency key was used before in the workspace."""
    statement = insert(runs).values(**values)
    if values.get("idempotency_key") is not None:
        statement = statement.on_conflict_do_nothing(
            index_elements=[runs.c.workspace_id, runs.c.idempotency_key]
        )
    return conn.execute(statement.returning(*COLUMNS)).first()


def get(conn: Connection, run_id: UUID, workspace_id: UUID | None = None) -> Row[Any] | None:
    statement = sa.select(*COLUMNS).where(runs.c.id == run_id)
    if workspace_id is not None:
        statement = statement.where(runs.c.workspace_id == workspace_id)
    return conn.execute(statement).first()


def get_by_idempotency_key(conn: Connection, workspace_id: UUID, key: str) -> Row[Any] | None:
    statement = sa.select(*COLUMNS).where(
        runs.c.workspace_id == workspace_id, runs.c.idempotency_key == key
    )
    return conn.execute(statement).first()


def page(
    conn: Connection,
    workspace_id: UUID,
    filters: Mapping[str, Any],
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """Newest first; `after` is the (created_at, id) of the last row of the previous page."""
    statement = sa.select(*COLUMNS).where(runs.c.workspace_id == workspace_id)
    for column, value in filters.items():
        statement = statement.where(runs.c[column] == value)
    if after is not None:
        statement = statement.where(sa.tuple_(runs.c.created_at, runs.c.id) < sa.tuple_(*after))
    statement = statement.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
    return conn.execute(statement).all()


def transition(
    conn: Connection,
    run_id: UUID,
    target: RunStatus,
    *,
    sources: Sequence[RunStatus] | None = None,
    workspace_id: UUID | None = None,
    values: Mapping[str, Any] | None = None,
) -> Row[Any] | None:
    """Move a run to `target` if it is in one of `sources`; the returned row, or None if not."""
    allowed = sources_of(target)
    sources = allowed if sources is None else sources
    if not set(sources) <= set(allowed):
        raise ValueError(f"{target} cannot be reached from {sources}")
    statement = (
        sa.update(runs)
        .where(runs.c.id == run_id, runs.c.status.in_(sources))
        .values(status=target, updated_at=sa.func.now(), **(values or {}))
        .returning(*COLUMNS)
    )
    if workspace_id is not None:
        statement = statement.where(runs.c.workspace_id == workspace_id)
    return conn.execute(statement).first()


def claim(conn: Connection, run_id: UUID, worker: str) -> Row[Any] | None:
    """pending/retrying -> running, counting the attempt. None: someone else has it, or it ended.

    Returns everything the attempt needs (pipeline, params, stream name) in the same round trip.
    """
    statement = (
        sa.update(runs)
        .where(
            runs.c.id == run_id,
            runs.c.status.in_(CLAIMABLE),
            runs.c.attempt < runs.c.max_attempts,
        )
        .values(
            status=RunStatus.RUNNING,
            attempt=runs.c.attempt + 1,
            worker=worker,
            started_at=sa.func.coalesce(runs.c.started_at, sa.func.now()),
            heartbeat_at=sa.func.now(),
            next_attempt_at=None,
            updated_at=sa.func.now(),
        )
        .returning(
            runs.c.id,
            runs.c.run_type,
            runs.c.attempt,
            runs.c.max_attempts,
            runs.c.stream_id,
            runs.c.pipeline,
            runs.c.params,
            _stream_name.label("stream_name"),
        )
    )
    return conn.execute(statement).first()


def finish(conn: Connection, run_id: UUID, attempt: int, outcome: Outcome) -> RunStatus | None:
    """The one final write of an attempt, fenced by its attempt number.

    A cancel request that arrived meanwhile wins: the run ends `cancelled`, never `completed`.
    None means the attempt no longer owns the row (its lease was taken over, or it ended).
    """
    if outcome.status not in TRANSITIONS[RunStatus.RUNNING]:
        raise ValueError(f"an attempt cannot end {outcome.status}")
    cancel_wins = runs.c.cancel_requested_at.is_not(None)
    terminal = outcome.status in TERMINAL
    statement = (
        sa.update(runs)
        .where(runs.c.id == run_id, runs.c.status == RunStatus.RUNNING, runs.c.attempt == attempt)
        .values(
            status=sa.case((cancel_wins, RunStatus.CANCELLED.value), else_=outcome.status.value),
            result=sa.case(
                (cancel_wins, sa.null()), else_=sa.cast(outcome.result, runs.c.result.type)
            ),
            error=sa.case((cancel_wins, "cancelled on request"), else_=outcome.error),
            error_type=sa.case((cancel_wins, "cancelled"), else_=outcome.error_type),
            completed_at=sa.case(
                (cancel_wins, sa.func.now()), else_=sa.func.now() if terminal else None
            ),
            next_attempt_at=_after(outcome.retry_in),
            heartbeat_at=None,
            updated_at=sa.func.now(),
        )
        .returning(runs.c.status)
    )
    status = conn.execute(statement).scalar()
    return None if status is None else RunStatus(status)


def _after(seconds: float | None) -> Any:
    if seconds is None:
        return None
    return sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, seconds)


def heartbeat(conn: Connection, beats: Mapping[UUID, int]) -> dict[UUID, bool]:
    """Touch the running attempts in `beats` (run id -> attempt) in one statement.

    Returns, for each attempt that still owns its row, whether a cancel was requested;
    an id missing from the answer has lost its row.
    """
    if not beats:
        return {}
    alive = sa.select(
        sa.func.unnest(sa.cast(list(beats), ARRAY(runs.c.id.type))).label("id"),
        sa.func.unnest(sa.cast(list(beats.values()), ARRAY(sa.Integer))).label("attempt"),
    ).subquery("beats")
    statement = (
        sa.update(runs)
        .where(
            runs.c.id == alive.c.id,
            runs.c.attempt == alive.c.attempt,
            runs.c.status == RunStatus.RUNNING,
        )
        .values(heartbeat_at=sa.func.now())
        .returning(runs.c.id, runs.c.cancel_requested_at.is_not(None))
    )
    return {run_id: cancel for run_id, cancel in conn.execute(statement)}


def set_progress(
    conn: Connection, run_id: UUID, attempt: int, progress: Mapping[str, Any]
) -> bool | None:
    """Record progress; returns whether a cancel was requested, None if the attempt lost the row."""
    statement = (
        sa.update(runs)
        .where(runs.c.id == run_id, runs.c.status == RunStatus.RUNNING, runs.c.attempt == attempt)
        .values(progress=dict(progress), heartbeat_at=sa.func.now())
        .returning(runs.c.cancel_requested_at.is_not(None))
    )
    cancel: bool | None = conn.execute(statement).scalar()
    return cancel


def request_cancel(conn: Connection, run_id: UUID, workspace_id: UUID) -> Row[Any] | None:
    """Flag a running run for cancellation; its worker notices on the next heartbeat."""
    statement = (
        sa.update(runs)
        .where(
            runs.c.id == run_id,
            runs.c.workspace_id == workspace_id,
            runs.c.status == RunStatus.RUNNING,
        )
        .values(
            cancel_requested_at=sa.func.coalesce(runs.c.cancel_requested_at, sa.func.now()),
            updated_at=sa.func.now(),
        )
        .returning(*COLUMNS)
    )
    return conn.execute(statement).first()
