"""Every SQL statement about runs. Each state change is one conditional UPDATE; nothing here
commits (the hot-path statements run in autocommit, where one statement is one transaction).

Triggers keep `run_tallies` (migration 0005): each statement that changes runs upserts its
tallies in one order, so two such statements never deadlock. A transaction must therefore
change runs in ONE statement (a set-based INSERT or UPDATE), as every caller does today; two
run-changing statements in one transaction can deadlock with another such transaction."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
import sqlalchemy as sa
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.engine import Connection, Row

from app import db
from app.limits import gate_store
from app.models import pipeline_executions as runs
from app.runs.job import Job
from app.runs.outcome import Outcome
from app.states import CLAIMABLE, LIVE, TERMINAL, TRANSITIONS, RunStatus, sources_of

COLUMNS = (*runs.c,)
HotConnection = psycopg.Connection[Any]


def insert_run(conn: Connection, values: Mapping[str, Any]) -> Row[Any] | None:
    """Insert a run; None when its idempotency key was used before in the workspace."""
    statement = insert(runs).values(**values)
    if values.get("idempotency_key") is not None:
        statement = statement.on_conflict_do_nothing(
            index_elements=[runs.c.workspace_id, runs.c.idempotency_key]
        )
    return conn.execute(statement.returning(*COLUMNS)).first()


# A run from its stream, in one statement (POST /runs): the stream's pipeline, its params
# overlaid by the request's, the request's priority or the stream's, the stream's keys, and,
# if gated, where it parks (its workspace's cap or its first key: gate.parking). Nothing when
# the stream is not the workspace's, or the idempotency key was used before (a null key never
# conflicts).
_CREATE_FROM_STREAM = f"""
INSERT INTO pipeline_executions AS r (workspace_id, stream_id, run_type, pipeline, params,
    max_attempts, idempotency_key, priority, limit_keys, gated, waiting_for)
SELECT s.workspace_id, s.id, %(run_type)s, s.pipeline, s.params || %(params)s,
    %(max_attempts)s, %(idempotency_key)s, coalesce(%(priority)s, s.priority), s.limit_keys,
    parked.waiting_for IS NOT NULL, parked.waiting_for
FROM research_streams s
JOIN workspaces w ON w.id = s.workspace_id
CROSS JOIN LATERAL (
    SELECT {gate_store.parking("w.max_concurrent_runs IS NOT NULL", "s.limit_keys")}
        AS waiting_for
) parked
WHERE s.id = %(stream_id)s AND s.workspace_id = {{owner}}
ON CONFLICT (workspace_id, idempotency_key) DO NOTHING
RETURNING {", ".join(f"r.{column.name}" for column in COLUMNS)}
"""


@dataclass(frozen=True)
class Owner:
    """Whose runs a statement may touch: `sql` is an expression of the workspace id, a value
    or a lookup the statement makes (the holder of an API key), with its `values`."""

    sql: str
    values: Mapping[str, Any]

    @classmethod
    def workspace(cls, workspace_id: UUID) -> Owner:
        return cls("%(workspace_id)s::uuid", {"workspace_id": workspace_id})


@functools.cache
def _statement(template: str, owner_sql: str) -> str:
    return template.replace("{owner}", owner_sql)


@dataclass(frozen=True)
class FromStream:
    """What a request adds to a new run of a stream, and whose stream it must be."""

    owner: Owner
    stream_id: UUID
    run_type: str
    params: Mapping[str, Any]
    max_attempts: int
    idempotency_key: str | None
    priority: str | None  # None: the stream's

    def statement(self) -> str:
        return _statement(_CREATE_FROM_STREAM, self.owner.sql)

    def bound(self) -> dict[str, Any]:
        values = {name: value for name, value in self.__dict__.items() if name != "owner"}
        return {**values, **self.owner.values, "params": Jsonb(dict(self.params))}


def create_from_stream(conn: Connection, request: FromStream) -> Row[Any] | None:
    """A new run of the request's stream; None when there is no such stream of the owner,
    or the idempotency key was used before."""
    return conn.exec_driver_sql(request.statement(), request.bound()).first()


async def create_from_stream_async(conn: db.AsyncConnection, request: FromStream) -> Any:
    """create_from_stream on the event loop: the row (a named tuple), or None."""
    return await (await conn.execute(request.statement(), request.bound())).fetchone()


def insert_scheduled(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[UUID]:
    """Insert scheduled runs; a slot that already has its run is left alone (guarantee 4).

    Returns the ids of the runs this call created.
    """
    if not rows:
        return []
    if len(rows) > db.INSERT_PAGE:
        raise ValueError(f"at most {db.INSERT_PAGE} runs in one statement")
    statement = (
        insert(runs)
        .on_conflict_do_nothing(
            index_elements=[runs.c.stream_id, runs.c.scheduled_for],
            index_where=sa.text("run_type = 'scheduled'"),
        )
        .returning(runs.c.id)
    )
    return list(conn.execute(statement, list(rows)).scalars())


def scheduled_slots(conn: Connection, stream_id: UUID, slots: Sequence[datetime]) -> set[datetime]:
    """Which of the stream's `slots` already have their scheduled run."""
    statement = sa.select(runs.c.scheduled_for).where(
        runs.c.stream_id == stream_id,
        runs.c.run_type == "scheduled",
        runs.c.scheduled_for.in_(list(slots)),
    )
    return set(conn.execute(statement).scalars())


def live_by_stream(conn: Connection, stream_ids: Sequence[UUID]) -> dict[UUID, tuple[UUID, str]]:
    """(id, status) of the newest live (pending, running, retrying) run of each stream."""
    statement = (
        sa.select(runs.c.stream_id, runs.c.id, runs.c.status)
        .where(runs.c.stream_id.in_(stream_ids), runs.c.status.in_(LIVE))
        .order_by(runs.c.stream_id, runs.c.created_at.desc())
        .ext(distinct_on(runs.c.stream_id))
    )
    return {stream_id: (run_id, status) for stream_id, run_id, status in conn.execute(statement)}


# Built once: a statement made per call costs more CPU than its round trip to Postgres.
_GET = sa.select(*COLUMNS).where(runs.c.id == sa.bindparam("run_id"))
_GET_OF_WORKSPACE = _GET.where(runs.c.workspace_id == sa.bindparam("workspace_id"))


def get(conn: Connection, run_id: UUID, workspace_id: UUID | None = None) -> Row[Any] | None:
    if workspace_id is None:
        return conn.execute(_GET, {"run_id": run_id}).first()
    return conn.execute(_GET_OF_WORKSPACE, {"run_id": run_id, "workspace_id": workspace_id}).first()


_GET_OF_OWNER = db.psycopg_sql(_GET) + " AND pipeline_executions.workspace_id = {owner}"


async def get_async(conn: db.AsyncConnection, run_id: UUID, owner: Owner) -> Any:
    """The run (a named tuple) if it is the owner's, else None."""
    statement = _statement(_GET_OF_OWNER, owner.sql)
    return await (await conn.execute(statement, {"run_id": run_id, **owner.values})).fetchone()


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


# The hot path (claim -> heartbeats/progress -> finish) runs these on a raw autocommit
# connection (db.hot_connection): each is one conditional UPDATE, one round trip.
def _quoted(statuses: Sequence[RunStatus]) -> str:
    return ", ".join(f"'{status.value}'" for status in statuses)


def _released(run: str) -> str:
    """SQL: once `run` has ended, the oldest run of its stream queued by overlap "queue",
    to be published. Its claim decides whether it may start (every older run of the stream
    ended); whichever run ends last publishes it after its commit, so no wake-up is lost."""
    return f"""ARRAY(SELECT waiting.id FROM pipeline_executions waiting
                   WHERE waiting.stream_id = {run}.stream_id AND waiting.after_run IS NOT NULL
                     AND waiting.status = 'pending'
                     AND {run}.status IN ({_quoted(tuple(TERMINAL))})
                   ORDER BY waiting.created_at, waiting.id LIMIT 1)"""


def queue_clear(run: str) -> str:
    """SQL: `run`, if queued by overlap "queue" (after_run set), may start: every older run
    of its stream has ended, whatever its type, and so has the run it was queued behind.
    One pointer alone could go stale (a newer manual run ends first; the run pointed at is
    cancelled while the tick writes), and created_at alone is a transaction's start time,
    earlier than a run committed while the tick planned."""
    return f"""({run}.after_run IS NULL OR NOT EXISTS (
        SELECT 1 FROM pipeline_executions older
         WHERE older.stream_id = {run}.stream_id
           AND older.status IN ({_quoted(LIVE)})
           AND ((older.created_at, older.id) < ({run}.created_at, {run}.id)
                OR older.id = {run}.after_run)))"""


# A run with no limit keys in a workspace without a cap.
_UNGATED = """(NOT {run}.gated AND NOT EXISTS (
    SELECT 1 FROM workspaces capped
     WHERE capped.id = {run}.workspace_id AND capped.max_concurrent_runs IS NOT NULL))"""

# One round trip, one row: the claimed attempt, or (not claimed) how many seconds of
# backoff the run has left, so that a message that came early goes back for the rest, and
# whether the run must be claimed through the gate instead (app/limits/gate.py).
_CLAIM = f"""
WITH claimed AS (
UPDATE pipeline_executions
   SET status = 'running', attempt = attempt + 1, worker = %(worker)s,
       started_at = coalesce(started_at, now()), heartbeat_at = now(),
       next_attempt_at = NULL, waiting_for = NULL, updated_at = now()
 WHERE id = %(run_id)s AND status IN ({_quoted(CLAIMABLE)}) AND attempt < max_attempts
   AND (next_attempt_at IS NULL OR next_attempt_at <= now())
   AND (waiting_for IS NULL OR waiting_for ->> 'kind' = 'overlap')
   AND {_UNGATED.format(run="pipeline_executions")}
   AND {queue_clear("pipeline_executions")}
RETURNING id, pipeline, run_type, attempt, max_attempts, stream_id, params,
          (SELECT name FROM research_streams s WHERE s.id = stream_id) AS stream_name,
          priority)
SELECT claimed.*,
       (SELECT extract(epoch FROM w.next_attempt_at - now())::float8
          FROM pipeline_executions w
         WHERE w.id = %(run_id)s AND w.status IN ({_quoted(CLAIMABLE)})
           AND w.next_attempt_at > now()) AS wait_seconds,
       (SELECT NOT {_UNGATED.format(run="w")} FROM pipeline_executions w
         WHERE w.id = %(run_id)s AND w.status IN ({_quoted(CLAIMABLE)})) AS gate
  FROM (VALUES (1)) AS one LEFT JOIN claimed ON true
"""

# A cancel request that arrived meanwhile wins over whatever the attempt reports. The run
# queued behind this one's stream (overlap "queue") comes back with it, to be published.
_FINISH = f"""
WITH finished AS (
UPDATE pipeline_executions
   SET status = CASE WHEN cancel_requested_at IS NULL THEN %(status)s ELSE 'cancelled' END,
       result = CASE WHEN cancel_requested_at IS NULL THEN %(result)s::jsonb END,
       error = CASE WHEN cancel_requested_at IS NULL THEN %(error)s
                    ELSE 'cancelled on request' END,
       error_type = CASE WHEN cancel_requested_at IS NULL THEN %(error_type)s
                         ELSE 'cancelled' END,
       completed_at = CASE WHEN cancel_requested_at IS NOT NULL OR %(terminal)s
                           THEN now() END,
       next_attempt_at = now() + make_interval(secs => %(retry_in)s),
       heartbeat_at = NULL, updated_at = now()
 WHERE id = %(run_id)s AND status = 'running' AND attempt = %(attempt)s
RETURNING id, status, stream_id)
SELECT status, {_released("finished")} FROM finished
"""

_HEARTBEAT = """
UPDATE pipeline_executions p
   SET heartbeat_at = now()
  FROM unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS beat(id, attempt)
 WHERE p.id = beat.id AND p.attempt = beat.attempt AND p.status = 'running'
RETURNING p.id, extract(epoch FROM now() - p.cancel_requested_at)::float8
"""

_PROGRESS = """
UPDATE pipeline_executions
   SET progress = %(progress)s, heartbeat_at = now()
 WHERE id = %(run_id)s AND status = 'running' AND attempt = %(attempt)s
RETURNING extract(epoch FROM now() - cancel_requested_at)::float8
"""


@dataclass(frozen=True)
class Claimed:
    """What an attempt needs to run, returned by the claim itself."""

    id: UUID
    pipeline: str
    run_type: str
    attempt: int
    max_attempts: int
    stream_id: UUID
    params: dict[str, Any]
    stream_name: str | None
    priority: str = "normal"
    # Gated runs (claimed through app/limits/gate.py): what to release when the attempt ends.
    workspace_id: UUID | None = None
    limit_keys: list[str] = field(default_factory=list)
    gated: bool = False


@dataclass(frozen=True)
class ClaimAnswer:
    claimed: Claimed | None
    wait_seconds: float | None  # not claimed only because its backoff is not over
    gate: bool = False  # not claimed because it must go through the gate


def claim(conn: HotConnection, run_id: UUID, worker: str) -> ClaimAnswer:
    """pending/retrying -> running, counting the attempt (the fencing token of what follows).

    Not claimed: another delivery has it, it was cancelled or ended, it is queued behind an
    older run of its stream, or (`wait_seconds`) its backoff is not over yet.
    """
    with conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(_CLAIM, {"run_id": run_id, "worker": worker}).fetchone()
    assert row is not None
    wait_seconds, gate = row.pop("wait_seconds"), bool(row.pop("gate"))
    return ClaimAnswer(None if row["id"] is None else Claimed(**row), wait_seconds, gate)


@dataclass(frozen=True)
class Finished:
    status: RunStatus
    released: list[UUID]  # runs that were waiting for this one to end


def finish(conn: HotConnection, run_id: UUID, attempt: int, outcome: Outcome) -> Finished | None:
    """The one final write of an attempt, fenced by its attempt number.

    A cancel request that arrived meanwhile wins: the run ends `cancelled`, never `completed`.
    None means the attempt no longer owns the row (its lease was taken over, or it ended).
    """
    if outcome.status not in TRANSITIONS[RunStatus.RUNNING]:
        raise ValueError(f"an attempt cannot end {outcome.status}")
    parameters = {
        "run_id": run_id,
        "attempt": attempt,
        "status": outcome.status.value,
        "result": None if outcome.result is None else Jsonb(outcome.result),
        "error": outcome.error,
        "error_type": outcome.error_type,
        "terminal": outcome.status in TERMINAL,
        "retry_in": outcome.retry_in,
    }
    row = conn.execute(_FINISH, parameters).fetchone()
    return None if row is None else Finished(RunStatus(row[0]), row[1])


def heartbeat(conn: HotConnection, beats: Mapping[UUID, int]) -> dict[UUID, float | None]:
    """Touch the running attempts in `beats` (run id -> attempt) in one statement.

    Returns, for each attempt that still owns its row, how many seconds ago a cancel was
    requested (None: it was not); an id missing from the answer has lost its row.
    """
    if not beats:
        return {}
    parameters = {"ids": list(beats), "attempts": list(beats.values())}
    return {run_id: cancel for run_id, cancel in conn.execute(_HEARTBEAT, parameters)}


def set_progress(
    conn: HotConnection, run_id: UUID, attempt: int, progress: Mapping[str, Any]
) -> tuple[bool, float | None]:
    """Record progress. Answers as a heartbeat does: whether the attempt still owns its row,
    and how many seconds ago a cancel was requested (None: it was not)."""
    parameters = {"run_id": run_id, "attempt": attempt, "progress": Jsonb(dict(progress))}
    row = conn.execute(_PROGRESS, parameters).fetchone()
    return (False, None) if row is None else (True, row[0])


# Rescue: a running run whose heartbeat is older than the lease lost its worker. It goes back
# to retrying (the attempt counts), fails when attempts are used up, or ends cancelled if a
# cancel was asked for; a run still running past its cancel grace ends cancelled too (its
# worker may be gone). One statement for all of them. A worker that cannot renew a lease
# stops its pipeline before the lease expires (runs/supervisor.py), so the next attempt
# never overlaps it. Postgres' own start counts as a heartbeat of every run: no worker could
# renew while Postgres was down, so after a restart they all get a whole lease to answer.
_RESCUE = f"""
WITH lost AS (
    SELECT id FROM pipeline_executions
     WHERE status = 'running'
       AND (greatest(heartbeat_at, pg_postmaster_start_time())
              < now() - make_interval(secs => %(lease)s)
            OR cancel_requested_at < now() - make_interval(secs => %(grace)s + %(margin)s))
     ORDER BY heartbeat_at
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED)
UPDATE pipeline_executions p
   SET status = CASE WHEN p.cancel_requested_at IS NOT NULL THEN 'cancelled'
                     WHEN p.attempt >= p.max_attempts THEN 'failed'
                     ELSE 'retrying' END,
       error = CASE WHEN p.cancel_requested_at IS NOT NULL THEN 'cancelled on request'
                    ELSE format('worker %%s stopped answering: no heartbeat for %%s s',
                                p.worker, %(lease)s) END,
       error_type = CASE WHEN p.cancel_requested_at IS NOT NULL THEN 'cancelled'
                         ELSE 'lease_expired' END,
       completed_at = CASE WHEN p.cancel_requested_at IS NOT NULL
                             OR p.attempt >= p.max_attempts THEN now() END,
       next_attempt_at = now(), heartbeat_at = NULL, updated_at = now()
  FROM lost
 WHERE p.id = lost.id AND p.status = 'running'
RETURNING p.id, p.status, p.stream_id, p.run_type, p.attempt, {_released("p")},
          p.priority, p.gated, p.workspace_id, p.limit_keys
"""


@dataclass(frozen=True)
class Rescued:
    id: UUID
    status: RunStatus
    stream_id: UUID
    run_type: str
    attempt: int
    released: list[UUID]
    priority: str
    gated: bool
    workspace_id: UUID
    limit_keys: list[str]


def rescue_expired(
    conn: HotConnection, lease_seconds: float, grace_seconds: float, limit: int, margin: float
) -> list[Rescued]:
    """`margin`: past the cancel grace, how long the run's own worker has to terminate it
    before the sweep ends the row (and may start a run queued behind it)."""
    parameters = {"lease": lease_seconds, "grace": grace_seconds, "limit": limit, "margin": margin}
    rows = conn.execute(_RESCUE, parameters).fetchall()
    return [Rescued(row[0], RunStatus(row[1]), *row[2:]) for row in rows]


# A released gated run (not yet claimed) that holds room a cap counts: a slot or permit of
# one of its keys, or of its workspace's cap. Lost, it would keep the others waiting, so it
# is published again even behind a busy queue.
_HOLDS_ROOM = """({run}.gated AND {run}.status = 'pending' AND (
    EXISTS (SELECT 1 FROM limits l
             WHERE l.workspace_id = {run}.workspace_id AND l.key = ANY({run}.limit_keys)
               AND (l.max_concurrent IS NOT NULL OR l.rate_count IS NOT NULL))
    OR EXISTS (SELECT 1 FROM workspaces capped
                WHERE capped.id = {run}.workspace_id
                  AND capped.max_concurrent_runs IS NOT NULL)))"""

# Runs waiting for a worker that nobody claimed for a lease: the candidates to publish again
# (the caller does so only when their queue is empty, or only the queued runs that may start
# now: their wake-up may have been lost). Touching updated_at spaces the tries.
_UNCLAIMED = f"""
WITH stale AS (
    SELECT id FROM pipeline_executions w
     WHERE status IN ({_quoted(CLAIMABLE)})
       AND updated_at < now() - make_interval(secs => %(lease)s)
       AND coalesce(next_attempt_at, updated_at) < now() - make_interval(secs => %(lease)s)
       AND (w.waiting_for IS NULL OR w.waiting_for ->> 'kind' = 'overlap')
       AND (NOT %(queued_only)s OR w.after_run IS NOT NULL OR {_HOLDS_ROOM.format(run="w")})
       AND {queue_clear("w")}
     ORDER BY created_at
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED)
UPDATE pipeline_executions p SET updated_at = now()
  FROM stale WHERE p.id = stale.id AND p.status IN ({_quoted(CLAIMABLE)})
RETURNING p.id, p.priority, p.gated
"""


def take_unclaimed(
    conn: HotConnection, lease_seconds: float, limit: int, queued_only: bool = False
) -> list[Job]:
    parameters = {"lease": lease_seconds, "limit": limit, "queued_only": queued_only}
    return [Job(*row) for row in conn.execute(_UNCLAIMED, parameters).fetchall()]


def next_queued(conn: Connection, stream_id: UUID) -> list[UUID]:
    """The oldest run of the stream queued by overlap "queue" (see _released): to publish
    when a run of the stream ended outside the hot path (a cancel)."""
    statement = (
        sa.select(runs.c.id)
        .where(
            runs.c.stream_id == stream_id,
            runs.c.after_run.is_not(None),
            runs.c.status == RunStatus.PENDING,
        )
        .order_by(runs.c.created_at, runs.c.id)
        .limit(1)
    )
    return list(conn.execute(statement).scalars())


def next_queued_of(conn: Connection, stream_ids: Sequence[UUID]) -> list[UUID]:
    """next_queued for many streams, in one statement."""
    statement = (
        sa.select(runs.c.id)
        .where(
            runs.c.stream_id.in_(stream_ids),
            runs.c.after_run.is_not(None),
            runs.c.status == RunStatus.PENDING,
        )
        .order_by(runs.c.stream_id, runs.c.created_at, runs.c.id)
        .ext(distinct_on(runs.c.stream_id))
    )
    return list(conn.execute(statement).scalars())


def counts_by_status(conn: Connection, workspace_id: UUID | None) -> dict[str, int]:
    statement = sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status)
    if workspace_id is not None:
        statement = statement.where(runs.c.workspace_id == workspace_id)
    return {status: number for status, number in conn.execute(statement)}


def running_by_worker(conn: Connection) -> dict[str, int]:
    """Running runs per worker name (served by the index on live runs)."""
    statement = (
        sa.select(runs.c.worker, sa.func.count())
        .where(runs.c.status == RunStatus.RUNNING)
        .group_by(runs.c.worker)
    )
    return {worker: number for worker, number in conn.execute(statement) if worker}


def recent_failures(conn: Connection, workspace_id: UUID, limit: int) -> Sequence[Row[Any]]:
    statement = (
        sa.select(*COLUMNS)
        .where(
            runs.c.workspace_id == workspace_id,
            runs.c.status == RunStatus.FAILED,
            runs.c.completed_at.is_not(None),  # always true; lets the partial index serve
        )
        .order_by(runs.c.completed_at.desc())
        .limit(limit)
    )
    return conn.execute(statement).all()


# Retention and cleanup: the oldest ended runs first, one bounded batch per statement, along
# ix_pipeline_executions_ended. `after` is where the previous batch stopped (the latest
# completed_at it deleted), so no batch walks again past what earlier ones deleted. Rows are
# deleted by ctid, which the locking SELECT returned: no second lookup through the primary
# key. A live run is never deleted, whatever its completed_at says.
_DELETE_ENDED = f"""
WITH doomed AS (
    SELECT ctid FROM pipeline_executions
     WHERE completed_at < :before AND completed_at >= :after
       AND status IN ({_quoted(tuple(TERMINAL))}) {{scope}}
     ORDER BY completed_at
     LIMIT :limit
       FOR UPDATE SKIP LOCKED),
gone AS (
    DELETE FROM pipeline_executions
     WHERE ctid = ANY(ARRAY(SELECT ctid FROM doomed))
       AND status IN ({_quoted(tuple(TERMINAL))})
    RETURNING completed_at)
SELECT count(*), max(completed_at) FROM gone
"""
_ALL_ENDED = sa.text(_DELETE_ENDED.format(scope=""))
_ENDED_IN_WORKSPACE = sa.text(
    _DELETE_ENDED.format(scope="AND workspace_id = :workspace_id AND status = :status")
)


def delete_ended(
    conn: Connection,
    before: datetime,
    after: datetime,
    limit: int,
    *,
    workspace_id: UUID | None = None,
    status: RunStatus | None = None,
) -> tuple[int, datetime | None]:
    """Delete up to `limit` runs that ended in [after, before), oldest first, all workspaces'
    or (both given) one workspace's runs of one terminal status. Returns how many, and the
    latest completed_at deleted: the next batch's `after`."""
    parameters: dict[str, Any] = {"before": before, "after": after, "limit": limit}
    statement = _ALL_ENDED
    if workspace_id is not None or status is not None:
        if workspace_id is None or status is None or status not in TERMINAL:
            raise ValueError("a scoped delete needs a workspace and a terminal status")
        parameters |= {"workspace_id": workspace_id, "status": status.value}
        statement = _ENDED_IN_WORKSPACE
    count, last = conn.execute(statement, parameters).one()
    return count, last


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
