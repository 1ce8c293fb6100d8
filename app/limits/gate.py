"""The gate: how a gated run (one that names limit keys, or whose workspace has a cap) gets
a slot, and how the runs waiting for one are let go. See README: Flow control.

- A gated run is created parked (`waiting_for` set, no message) and released at once if it
  fits; a release clears `waiting_for` and publishes it.
- Its claim re-checks everything, exactly, under the locks (gate_store): it starts, or parks
  itself again with the reason. No message waits in Redis for a slot and none bounces.
- When a gated run stops running (its end, a retry, a rescue), a release of its keys and
  workspace follows; a rate key out of permits schedules one release for when its window
  opens; the sweep releases every key with parked runs, in case a wake-up was lost.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from sqlalchemy import text
from sqlalchemy.engine import Connection

from app import db
from app.limits import gate_store as sql
from app.runs import dispatch
from app.runs.store import HotConnection, queue_clear
from app.settings import get_settings

log = logging.getLogger(__name__)

_CLAIM = sql.CLAIM.format(queue_clear_r=queue_clear("r"), queue_clear_p=queue_clear("p"))
SWEEP_BATCH = 1000


def parking(keys: Sequence[str], capped: bool) -> dict[str, Any] | None:
    """Where a new gated run waits until the release that follows its creation: on its
    workspace's cap if there is one, else on its first key. None: the run is not gated."""
    if capped:
        return {"kind": "workspace", "key": None, "until": None}
    if keys:
        return {"kind": "concurrency", "key": keys[0], "until": None}
    return None


def capped_workspaces(conn: Connection, workspace_ids: Iterable[UUID]) -> set[UUID]:
    ids = list(set(workspace_ids))
    if not ids:
        return set()
    return {row[0] for row in conn.execute(text(sql.CAPPED), {"ids": ids})}


@dataclass(frozen=True)
class GatedClaim:
    row: dict[str, Any] | None  # the claimed attempt, as store.claim returns it
    waiting_for: dict[str, Any] | None  # parked, and why
    wait_seconds: float | None  # not claimed only because its backoff is not over


def claim(conn: HotConnection, run_id: UUID, worker: str) -> GatedClaim:
    """Claim a gated run, or park it: one transaction in one round trip."""
    parameters = {"run_id": run_id, "worker": worker}
    with conn.cursor(row_factory=dict_row) as cursor:
        _in_transaction(conn, [(sql.LOCK_OF_RUN, parameters)], cursor, (_CLAIM, parameters))
        row = cursor.fetchone()
    assert row is not None
    waiting_for, wait_seconds = row.pop("waiting_for"), row.pop("wait_seconds")
    opens_in, parked_in = row.pop("opens_in"), row.pop("parked_in")
    parked_keys = row.pop("parked_keys")
    if opens_in is not None and waiting_for is not None:
        _schedule_wakes(conn, parked_in, [(waiting_for["key"], opens_in)])
    elif waiting_for is not None:
        _recheck(conn, parked_in, parked_keys)
    return GatedClaim(None if row["id"] is None else row, waiting_for, wait_seconds)


def _recheck(conn: HotConnection, workspace_id: UUID, keys: Sequence[str]) -> None:
    """After parking: a run that held the slot may have ended between this claim's count
    and its commit, and looked for waiting runs before this one was visible. Look again,
    now that it is: whichever of the two looks last sees the other (see after_end)."""
    released, wakes = _release(conn, workspace_id, keys)
    _schedule_wakes(conn, workspace_id, wakes)
    dispatch.publish_many(released)


def after_end(workspace_id: UUID, keys: Sequence[str]) -> int:
    """A gated run stopped running: release what waits on its keys and workspace, if
    anything does. The look is a plain read, without the locks: a run that parks after it
    looks up its own release once its parking is committed (_recheck), so of the ending
    run and the parking one, the one that looks last sees the other's change."""
    parameters = {"workspace_id": workspace_id, "keys": sorted(set(keys))}
    with db.hot_connection() as conn:
        present = conn.execute(sql.WAITING, parameters).fetchone()
    return release(workspace_id, keys) if present and present[0] else 0


def release(workspace_id: UUID, keys: Sequence[str]) -> int:
    """Let go the runs parked on `keys` and on the workspace's cap that fit now, and publish
    them; returns how many. Called after anything that may free room."""
    with db.hot_connection() as conn:
        released, wakes = _release(conn, workspace_id, keys)
        _schedule_wakes(conn, workspace_id, wakes)
    if not released:
        return 0
    log.debug("released %d run(s) of workspace %s", len(released), workspace_id)
    return dispatch.publish_many(released)


def _release(
    conn: HotConnection, workspace_id: UUID, keys: Sequence[str]
) -> tuple[list[dispatch.Job], list[tuple[str, float]]]:
    parameters = {"workspace_id": workspace_id, "keys": sorted(set(keys))}
    with conn.cursor() as cursor:
        _in_transaction(conn, [(sql.LOCK, parameters)], cursor, (sql.RELEASE, parameters))
        rows = cursor.fetchall()
    released = [dispatch.Job(run_id, priority, True) for run_id, priority, _, _ in rows if run_id]
    wakes = [(key, opens_in) for run_id, _, key, opens_in in rows if run_id is None]
    return released, wakes


def _in_transaction(
    conn: HotConnection,
    before: Sequence[tuple[str, dict[str, Any]]],
    cursor: psycopg.Cursor[Any],
    main: tuple[str, dict[str, Any]],
) -> None:
    """BEGIN, the `before` statements (the locks), `main` on `cursor`, COMMIT: sent in one
    pipeline, one round trip. Each statement of the transaction sees what committed before
    it started (READ COMMITTED), so `main` sees every change made under the locks before."""
    try:
        with conn.pipeline() as pipeline, conn.cursor() as other:
            other.execute("BEGIN")
            other.execute(sql.GENERIC_PLANS)
            for statement, parameters in before:
                other.execute(statement, parameters)
            cursor.execute(*main)
            other.execute("COMMIT")
            pipeline.sync()
    except psycopg.Error:
        # A failed statement makes the server skip the rest, COMMIT included: end the
        # transaction here, so the connection goes back to the pool clean.
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
        raise


def _schedule_wakes(
    conn: HotConnection, workspace_id: UUID, wakes: Sequence[tuple[str, float]]
) -> None:
    """One release per rate key for when its window opens, unless one is already due by
    then (limits.wake_at); the sweep stands in for a wake-up whose message is lost."""
    # A countdown longer than the broker's visibility timeout would be delivered again and
    # again (CELERY-FACTS); windows that long are left to the sweep.
    horizon = get_settings().broker_visibility_timeout / 2
    for key, seconds in wakes:
        if seconds > horizon:
            continue
        parameters = {"workspace_id": workspace_id, "key": key, "seconds": seconds}
        if conn.execute(sql.SCHEDULE_WAKE, parameters).fetchone() is not None:
            dispatch.publish_release(workspace_id, key, seconds)


def wake(workspace_id: UUID, key: str) -> int:
    """A rate key's window opened (a scheduled release): release what waits on it. The
    wake-up is spent first, so that one that came early (the clocks of the worker that
    scheduled it and of the one running it disagree) schedules the next."""
    with db.hot_connection() as conn:
        conn.execute(sql.WOKEN, {"workspace_id": workspace_id, "key": key})
    return release(workspace_id, [key])


def sweep(idle_seconds: float) -> int:
    """Release every key (and workspace cap) with runs parked on it for `idle_seconds`."""
    with db.hot_connection() as conn:
        rows = conn.execute(
            sql.PARKED_KEYS, {"idle": idle_seconds, "limit": SWEEP_BATCH}
        ).fetchall()
    keys: dict[UUID, list[str]] = defaultdict(list)
    for workspace_id, key in rows:
        keys[workspace_id] += [key] if key is not None else []
    return sum(
        release(workspace_id, workspace_keys) for workspace_id, workspace_keys in keys.items()
    )
