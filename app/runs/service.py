"""Runs as the API sees them: create, read, list, cancel, retry. One transaction per call;
a run is published only after its row is committed."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from anyio import to_thread
from sqlalchemy.engine import Connection, Row

from app import db
from app.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from app.limits import gate
from app.runs import bulk_store, dispatch, starting, store
from app.settings import get_settings
from app.states import CLAIMABLE, RunStatus, RunType
from app.streams import store as streams_store
from app.workspaces import store as workspaces_store
from app.workspaces.store import hash_key

CURSOR_PATTERN = r"^[0-9]{1,16}-[0-9a-f]{32}$"  # 16 digits of microseconds: until 2286
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Created:
    run: Any  # the run's row: its columns as attributes, and `_asdict()`
    created: bool  # False: an earlier request with the same Idempotency-Key made it


@dataclass(frozen=True)
class Page:
    items: Sequence[Row[Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class NewRun:
    """A request for a run of a stream: `params` overlaid on the stream's, `priority` (high,
    normal or low) overriding the stream's."""

    stream_id: UUID
    run_type: RunType = RunType.MANUAL
    params: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    priority: str | None = None

    def of(self, owner: store.Owner) -> store.FromStream:
        return store.FromStream(
            owner=owner,
            stream_id=self.stream_id,
            run_type=self.run_type,
            params=self.params or {},
            max_attempts=get_settings().max_attempts,
            idempotency_key=self.idempotency_key,
            priority=self.priority,
        )


def create(
    workspace_id: UUID,
    stream_id: UUID,
    run_type: RunType,
    params: Mapping[str, Any] | None,
    idempotency_key: str | None = None,
    priority: str | None = None,
) -> Created:
    """A run of the stream (see NewRun). One INSERT that reads the stream, so one commit."""
    new = NewRun(stream_id, run_type, params, idempotency_key, priority)
    request = new.of(store.Owner.workspace(workspace_id))
    with db.autocommit() as conn:
        row = store.create_from_stream(conn, request)
        if row is None:
            return Created(_not_created(conn, workspace_id, request), False)
    _start(row)
    return Created(row, True)


async def create_async(api_key: str, new: NewRun) -> Created:
    """`create` on the event loop, for the holder of `api_key` (the API's): the same
    statement checks the key, so a run takes one round trip to Postgres and one to Redis.
    Unauthenticated when the key is unknown or revoked."""
    request = new.of(_key_holder(api_key))
    async with db.async_autocommit() as conn:
        row = await store.create_from_stream_async(conn, request)
    if row is None:
        # Rare (a bad key, a repeated Idempotency-Key, no such stream): answered in a thread.
        return await to_thread.run_sync(_replay, api_key, request)
    await starting.start_async(starting.Created.of(row._asdict()))
    return Created(row, True)


def _key_holder(api_key: str) -> store.Owner:
    return store.Owner(workspaces_store.KEY_HOLDER_SQL, {"key_hash": hash_key(api_key)})


def _replay(api_key: str, request: store.FromStream) -> Created:
    with db.autocommit() as conn:
        workspace_id = _holder(conn, api_key)
        return Created(_not_created(conn, workspace_id, request), False)


def _holder(conn: Connection, api_key: str) -> UUID:
    workspace_id = workspaces_store.workspace_for_key(conn, api_key)
    if workspace_id is None:
        raise Unauthenticated()
    return workspace_id


def _not_created(conn: Connection, workspace_id: UUID, request: store.FromStream) -> Row[Any]:
    """Why a run of the stream was not created: the run an earlier request with the same
    Idempotency-Key made, for the same stream (answered again, even if the stream has been
    deleted since); the stream is not the workspace's (404); the key was used for another
    stream (409)."""
    existing = None
    if request.idempotency_key is not None:
        existing = store.get_by_idempotency_key(conn, workspace_id, request.idempotency_key)
    if existing is not None and existing.stream_id == request.stream_id:
        return existing
    _stream(conn, workspace_id, request.stream_id)
    if existing is None:  # a concurrent request's insert rolled back, or the stream moved
        raise Conflict(
            "a request with this Idempotency-Key is in flight; try again"
            if request.idempotency_key is not None
            else "the stream changed meanwhile; try again"
        )
    raise Conflict("this Idempotency-Key was used for another stream's run")


def get(workspace_id: UUID, run_id: UUID) -> Row[Any]:
    with db.autocommit() as conn:
        return _run(conn, workspace_id, run_id)


async def get_async(api_key: str, run_id: UUID) -> Any:
    """`get` on the event loop, for the holder of `api_key`, checked by the same statement."""
    async with db.async_autocommit() as conn:
        row = await store.get_async(conn, run_id, _key_holder(api_key))
        if row is None and await workspaces_store.workspace_for_key_async(conn, api_key) is None:
            raise Unauthenticated()
    if row is None:
        raise NotFound("run", run_id)
    return row


def locate(run_id: UUID) -> Row[Any]:
    """A run of any workspace: for operators, who are not a tenant."""
    with db.unit_of_work() as conn:
        row = store.get(conn, run_id)
    if row is None:
        raise NotFound("run", run_id)
    return row


def workspace_of(run_id: UUID) -> UUID:
    """The workspace a run belongs to, so operators can act on it as its workspace would."""
    workspace_id: UUID = locate(run_id).workspace_id
    return workspace_id


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
                "waiting_for": None,
            },
        ) or store.request_cancel(conn, run_id, workspace_id)
        if row is None:
            current = _run(conn, workspace_id, run_id)
            raise Conflict(f"run {run_id} is already {current.status}")
        ended = row.status == RunStatus.CANCELLED
        released = store.next_queued(conn, row.stream_id) if ended else []
    dispatch.publish_many(released)
    if ended and row.gated:  # it may have been let go, on its way to a slot
        gate.release(row.workspace_id, row.limit_keys)
    return row


def retry(workspace_id: UUID, run_id: UUID) -> Row[Any]:
    """A failed or cancelled run, again: a new run with `retry_of` pointing at the old one."""
    with db.unit_of_work() as conn:
        bulk_store.lock_retries(conn, workspace_id)  # a bulk retry then sees this one
        original = _run(conn, workspace_id, run_id)
        if original.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
            raise Conflict(
                f"only failed or cancelled runs can be retried; run is {original.status}"
            )
        capped = workspace_id in gate.capped_workspaces(conn, [workspace_id])
        row = store.insert_run(conn, retry_values(original, capped))
    assert row is not None
    _start(row)
    return row


def retry_values(original: Row[Any], capped: bool) -> dict[str, Any]:
    """A new run doing what `original` did (a scheduled run's retry is manual), with its
    priority and keys, parked if gated (`capped`: its workspace has a cap)."""
    run_type = RunType.MANUAL if original.run_type == RunType.SCHEDULED else original.run_type
    waiting_for = gate.parking(original.limit_keys, capped)
    return {
        "workspace_id": original.workspace_id,
        "stream_id": original.stream_id,
        "run_type": run_type,
        "pipeline": original.pipeline,
        "params": original.params,
        "max_attempts": original.max_attempts,
        "retry_of": original.id,
        "priority": original.priority,
        "limit_keys": list(original.limit_keys),
        "gated": waiting_for is not None,
        "waiting_for": waiting_for,
    }


def _start(run: Row[Any]) -> None:
    starting.start([starting.Created.of(run._mapping)])


def encode_cursor(row: Row[Any]) -> str:
    """A position in the newest-first list: `<created_at in µs since 1970>-<run id hex>`.
    Every string matching CURSOR_PATTERN is a position, so a schema can state the whole rule."""
    return f"{(row.created_at - _EPOCH) // _MICROSECOND}-{row.id.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise InvalidInput("cursor", "not a cursor this API returned", "query")
    micros, _, run_id = cursor.partition("-")
    return _EPOCH + int(micros) * _MICROSECOND, UUID(hex=run_id)


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
