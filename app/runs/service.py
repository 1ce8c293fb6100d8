"""Runs as the API sees them: create, read, list, cancel, retry. One transaction per call;
a run is published only after its row is committed."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from app import db
from app.errors import Conflict, InvalidInput, NotFound
from app.runs import dispatch, store
from app.settings import get_settings
from app.states import CLAIMABLE, RunStatus, RunType
from app.streams import store as streams_store


@dataclass(frozen=True)
class Created:
    run: Row[Any]
    created: bool  # False: an earlier request with the same Idempotency-Key made it


@dataclass(frozen=True)
class Page:
    items: Sequence[Row[Any]]
    next_cursor: str | None


def create(
    workspace_id: UUID,
    stream_id: UUID,
    run_type: RunType,
    params: Mapping[str, Any] | None,
    idempotency_key: str | None = None,
) -> Created:
    with db.unit_of_work() as conn:
        stream = _stream(conn, workspace_id, stream_id)
        row = store.insert_run(
            conn,
            {
                "workspace_id": workspace_id,
                "stream_id": stream_id,
                "run_type": run_type,
                "pipeline": stream.pipeline,
                "params": {**stream.params, **(params or {})},
                "max_attempts": get_settings().max_attempts,
                "idempotency_key": idempotency_key,
            },
        )
        if row is None:
            return Created(_replay(conn, workspace_id, stream_id, idempotency_key or ""), False)
    dispatch.publish(row.id)
    return Created(row, True)


def get(workspace_id: UUID, run_id: UUID) -> Row[Any]:
    with db.unit_of_work() as conn:
        return _run(conn, workspace_id, run_id)


def page(workspace_id: UUID, filters: Mapping[str, Any], cursor: str | None, limit: int) -> Page:
    after = decode_cursor(cursor) if cursor else None
    with db.unit_of_work() as conn:
        rows = store.page(conn, workspace_id, filters, after, limit + 1)
    more = len(rows) > limit
    items = rows[:limit]
    return Page(items, encode_cursor(items[-1]) if more else None)


def cancel(workspace_id: UUID, run_id: UUID) -> Row[Any]:
    """Waiting runs are cancelled at once; a running one is asked to stop (it ends cancelled)."""
    with db.unit_of_work() as conn:
        row = store.transition(
            conn,
            run_id,
            RunStatus.CANCELLED,
            sources=CLAIMABLE,
            workspace_id=workspace_id,
            values={
                "cancel_requested_at": sa.func.now(),
                "completed_at": sa.func.now(),
                "error": "cancelled on request",
                "error_type": "cancelled",
            },
        ) or store.request_cancel(conn, run_id, workspace_id)
        if row is None:
            current = _run(conn, workspace_id, run_id)
            raise Conflict(f"run {run_id} is already {current.status}")
        ended = row.status == RunStatus.CANCELLED
        released = store.next_queued(conn, row.stream_id) if ended else []
    dispatch.publish_many(released)
    return row


def retry(workspace_id: UUID, run_id: UUID) -> Row[Any]:
    """A failed or cancelled run, again: a new run with `retry_of` pointing at the old one."""
    with db.unit_of_work() as conn:
        original = _run(conn, workspace_id, run_id)
        if original.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
            raise Conflict(
                f"only failed or cancelled runs can be retried; run is {original.status}"
            )
        run_type = RunType.MANUAL if original.run_type == RunType.SCHEDULED else original.run_type
        row = store.insert_run(
            conn,
            {
                "workspace_id": workspace_id,
                "stream_id": original.stream_id,
                "run_type": run_type,
                "pipeline": original.pipeline,
                "params": original.params,
                "max_attempts": original.max_attempts,
                "retry_of": original.id,
            },
        )
    assert row is not None
    dispatch.publish(row.id)
    return row


@dataclass(frozen=True)
class Status:
    counts: dict[str, int]
    recent_failures: Sequence[Row[Any]]


def status(workspace_id: UUID) -> Status:
    with db.unit_of_work() as conn:
        counts = store.counts_by_status(conn, workspace_id)
        failures = store.recent_failures(conn, workspace_id, 10)
    return Status({state.value: counts.get(state.value, 0) for state in RunStatus}, failures)


def cleanup(workspace_id: UUID, status: RunStatus, older_than_days: int) -> int:
    """Delete ended runs of one status, older than the given number of days."""
    if not status.is_terminal:
        raise InvalidInput("status", "only completed, failed or cancelled runs can be deleted")
    with db.unit_of_work() as conn:
        return store.delete_ended(conn, workspace_id, status, timedelta(days=older_than_days))


def encode_cursor(row: Row[Any]) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, run_id = raw.split("|")
        return datetime.fromisoformat(created_at), UUID(run_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput("cursor", "not a cursor this API returned", "query") from None


def _stream(conn: Connection, workspace_id: UUID, stream_id: UUID) -> Row[Any]:
    stream = streams_store.get(conn, stream_id, workspace_id)
    if stream is None:
        raise NotFound("stream", stream_id)
    return stream


def _run(conn: Connection, workspace_id: UUID, run_id: UUID) -> Row[Any]:
    row = store.get(conn, run_id, workspace_id)
    if row is None:
        raise NotFound("run", run_id)
    return row


def _replay(conn: Connection, workspace_id: UUID, stream_id: UUID, key: str) -> Row[Any]:
    existing = store.get_by_idempotency_key(conn, workspace_id, key)
    if existing is None:  # the other request's transaction rolled back meanwhile
        raise Conflict("a request with this Idempotency-Key is in flight; try again")
    if existing.stream_id != stream_id:
        raise Conflict("this Idempotency-Key was used for another stream's run")
    return existing
