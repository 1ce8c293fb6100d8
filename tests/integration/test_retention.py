"""Retention: old ended runs and old ticks are deleted in short batches; nothing live is."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest
import redis
import sqlalchemy as sa
from celery.schedules import schedule
from redbeat.decoder import RedBeatJSONEncoder

from app import db, retention, workspaces
from app.errors import InvalidInput
from app.models import pipeline_executions, research_streams, schedule_ticks
from app.runs import store
from app.schedules import entries
from app.settings import get_settings
from app.states import RunStatus
from tasks import housekeeping as housekeeping_tasks
from tests.fixtures.services import wait_for

TERMINAL = ("completed", "failed", "cancelled")


def _stream(workspace_id: UUID) -> UUID:
    with db.unit_of_work() as conn:
        stream_id: UUID = conn.execute(
            sa.insert(research_streams)
            .values(workspace_id=workspace_id, name="s", pipeline="builtin.noop")
            .returning(research_streams.c.id)
        ).scalar_one()
    return stream_id


def _runs(
    stream_id: UUID, status: str, ended: str | None, count: int = 1, **values: Any
) -> list[UUID]:
    """`count` runs of the stream with `status`, created a year ago and (`ended`: an age such
    as '40 days') ended that long ago, a millisecond apart."""
    completed_at = "NULL" if ended is None else f"now() - interval '{ended}' - g * interval '1ms'"
    with db.unit_of_work() as conn:
        workspace_id = conn.execute(
            sa.select(research_streams.c.workspace_id).where(research_streams.c.id == stream_id)
        ).scalar_one()
        inserted = conn.execute(
            sa.text(
                "INSERT INTO pipeline_executions (workspace_id, stream_id, run_type, status,"
                " pipeline, max_attempts, created_at, completed_at)"
                " SELECT :workspace_id, :stream_id, 'manual', :status, 'builtin.noop', 3,"
                f" now() - interval '1 year', {completed_at}"
                " FROM generate_series(1, :count) g RETURNING id"
            ),
            {
                "workspace_id": workspace_id,
                "stream_id": stream_id,
                "status": status,
                "count": count,
            },
        ).scalars()
        ids = list(inserted)
        if values:
            conn.execute(
                sa.update(pipeline_executions)
                .where(pipeline_executions.c.id.in_(ids))
                .values(**values)
            )
    return ids


def _ticks(stream_id: UUID, age: str, count: int = 1) -> None:
    with db.unit_of_work() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO schedule_ticks (stream_id, scheduled_for, outcome, created_at)"
                f" SELECT :stream_id, now() - interval '{age}' - g * interval '1ms', 'fired',"
                f" now() - interval '{age}' - g * interval '1ms'"
                " FROM generate_series(1, :count) g"
            ),
            {"stream_id": stream_id, "count": count},
        )


def _run_ids() -> set[UUID]:
    with db.unit_of_work() as conn:
        return set(conn.execute(sa.select(pipeline_executions.c.id)).scalars())


def _tick_count(older_than_days: int = 0) -> int:
    with db.unit_of_work() as conn:
        return conn.execute(
            sa.select(sa.func.count()).where(
                schedule_ticks.c.created_at
                < sa.func.now() - sa.func.make_interval(0, 0, 0, older_than_days)
            )
        ).scalar_one()


def test_purge_deletes_old_ended_runs_and_ticks_and_nothing_live(workspace_id: UUID) -> None:
    stream = _stream(workspace_id)
    for status in TERMINAL:
        _runs(stream, status, "40 days", 2)
    recent = [*_runs(stream, "completed", "29 days"), *_runs(stream, "failed", "1 hour")]
    live = [
        run for status in ("pending", "running", "retrying") for run in _runs(stream, status, None)
    ]
    # A live run keeps its row whatever its completed_at says.
    live += _runs(stream, "retrying", "40 days")
    _ticks(stream, "40 days", 3)
    _ticks(stream, "29 days", 2)

    report = retention.purge()

    assert _run_ids() == {*recent, *live}
    assert (_tick_count(), _tick_count(30)) == (2, 0)
    assert report.summary()["deleted"] == {
        "pipeline_executions": 6,
        "schedule_ticks": 3,
        "webhook_deliveries": 0,
    }
    assert report.finished
    # Again, as `celery -A app call runway.housekeeping.retention` runs it: nothing is left.
    again = json.loads(json.dumps(housekeeping_tasks.purge()))
    assert again["deleted"] == {
        "pipeline_executions": 0,
        "schedule_ticks": 0,
        "webhook_deliveries": 0,
    }


def test_a_run_queued_behind_a_purged_run_can_start(workspace_id: UUID) -> None:
    stream = _stream(workspace_id)
    (ended,) = _runs(stream, "completed", "40 days")
    (queued,) = _runs(stream, "pending", None, after_run=ended, created_at=sa.func.now())

    assert retention.purge().deleted == 1
    with db.hot_connection() as conn:
        answer = store.claim(conn, queued, "test-worker")
    assert answer.claimed is not None and answer.claimed.id == queued


def test_retention_days_zero_keeps_everything(
    workspace_id: UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _stream(workspace_id)
    runs = _runs(stream, "completed", "4000 days")
    _ticks(stream, "4000 days")
    monkeypatch.setenv("RUNWAY_RETENTION_DAYS", "0")
    get_settings.cache_clear()

    report = retention.purge()

    assert (report.cutoff, report.deleted) == (None, 0)
    assert _run_ids() == set(runs)
    assert _tick_count() == 1


def test_a_spent_budget_stops_between_batches_and_the_next_call_goes_on(
    workspace_id: UUID,
) -> None:
    stream = _stream(workspace_id)
    _runs(stream, "failed", "40 days", 5)
    _ticks(stream, "40 days", 3)

    first = retention.purge(batch_size=2, budget_seconds=0)
    assert first.summary()["deleted"] == {
        "pipeline_executions": 2,
        "schedule_ticks": 2,
        "webhook_deliveries": 0,
    }
    assert not first.finished

    rest = retention.purge(batch_size=2)
    assert rest.summary()["deleted"] == {
        "pipeline_executions": 3,
        "schedule_ticks": 1,
        "webhook_deliveries": 0,
    }
    assert rest.finished
    assert [len(p.batches) for p in rest.purged] == [2, 1, 1]
    assert _run_ids() == set()


def test_cleanup_deletes_one_workspaces_runs_of_one_status(workspace_id: UUID) -> None:
    stream = _stream(workspace_id)
    doomed = _runs(stream, "failed", "40 days", 5)
    kept = [
        *_runs(stream, "cancelled", "40 days"),
        *_runs(stream, "failed", "29 days"),
        *_runs(stream, "retrying", "40 days"),
    ]
    other_workspace, _ = workspaces.create_key("globex")
    kept += _runs(_stream(other_workspace), "failed", "40 days")

    assert retention.cleanup(workspace_id, RunStatus.FAILED, 30, batch_size=2) == len(doomed)
    assert _run_ids() == set(kept)
    with pytest.raises(InvalidInput):
        retention.cleanup(workspace_id, RunStatus.RETRYING, 30)


def _retention_ran_just_now(client: redis.Redis, prefix: str) -> None:
    """RedBeat's retention entry as a leader that just ran it leaves it: due in an hour."""
    definition = {
        "name": "runway-retention",
        "task": entries.RETENTION_TASK,
        "args": [],
        "kwargs": {},
        "options": {},
        "schedule": schedule(entries.RETENTION_PERIOD),
        "enabled": True,
    }
    meta = {"last_run_at": datetime.now(UTC)}
    client.hset(
        f"{prefix}:redbeat:runway-retention",
        mapping={
            "definition": json.dumps(definition, cls=RedBeatJSONEncoder),
            "meta": json.dumps(meta, cls=RedBeatJSONEncoder),
        },
    )


def test_beat_purges_when_it_starts_leading_whenever_it_last_ran(
    isolated_queues: str, workspace_id: UUID, spawn: Any, redis_client: redis.Redis
) -> None:
    stream = _stream(workspace_id)
    kept = _runs(stream, "completed", "1 day")
    _runs(stream, "completed", "40 days", 3)
    _ticks(stream, "40 days", 3)
    _retention_ran_just_now(redis_client, isolated_queues)

    beat = spawn("beat")

    wait_for(lambda: _run_ids() == set(kept) and _tick_count() == 0, 20, "beat to purge")
    assert (
        "retention: deleted 3 pipeline_executions, 3 schedule_ticks, 0 webhook_deliveries"
        in beat.log()
    )


class _Probe:
    """What other sessions see while a purge runs: how long their writes wait, and a table
    lock that conflicts with every delete (the lock CREATE INDEX takes); and the age of the
    oldest open transaction of Runway's own connections. Every statement gives up after 1 s."""

    def __init__(self, url: str, stream_id: UUID, run_id: UUID) -> None:
        self.url = url.replace("+psycopg", "")
        self.stream_id, self.run_id = stream_id, run_id
        self.waits: dict[str, float] = {}
        self.errors: list[str] = []
        self.rounds = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        options = "-c lock_timeout=1s -c statement_timeout=1s"
        with psycopg.connect(self.url, autocommit=True, options=options) as conn:
            while not self.stop.is_set():
                try:
                    self._round(conn)
                except psycopg.Error as error:
                    self.errors.append(str(error))
                self.rounds += 1

    def _round(self, conn: psycopg.Connection[Any]) -> None:
        with self._timed("table lock"), conn.transaction():
            conn.execute("LOCK TABLE pipeline_executions, schedule_ticks IN SHARE MODE")
        with self._timed("update a live run"):
            conn.execute(
                "UPDATE pipeline_executions SET heartbeat_at = now() WHERE id = %s", [self.run_id]
            )
        with self._timed("insert a tick"):
            conn.execute(
                "INSERT INTO schedule_ticks (stream_id, scheduled_for, outcome)"
                " VALUES (%s, now() + %s * interval '1 ms', 'fired')",
                [self.stream_id, self.rounds],
            )
        oldest = conn.execute(
            "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0)"
            " FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'runway' AND xact_start IS NOT NULL"
        ).fetchone()
        self._record("oldest transaction", float(oldest[0]) if oldest else 0.0)

    @contextmanager
    def _timed(self, what: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self._record(what, time.monotonic() - started)

    def _record(self, what: str, seconds: float) -> None:
        self.waits[what] = max(self.waits.get(what, 0.0), seconds)


@pytest.fixture
def probe(database_url: str, workspace_id: UUID) -> Iterator[_Probe]:
    stream = _stream(workspace_id)
    (live,) = _runs(stream, "running", None)
    found = _Probe(database_url, stream, live)
    yield found
    found.stop.set()
    found.thread.join(10)


@pytest.mark.slow
def test_a_million_old_rows_go_without_a_long_lock_or_transaction(
    workspace_id: UUID, probe: _Probe
) -> None:
    stream = _stream(workspace_id)
    _runs(stream, "completed", "40 days", 500_000)
    _ticks(stream, "40 days", 500_000)
    with db.unit_of_work() as conn:
        conn.execute(sa.text("ANALYZE pipeline_executions, schedule_ticks"))

    probe.thread.start()
    wait_for(lambda: probe.rounds >= 3, 10, "the probe to start")
    report = retention.purge(budget_seconds=120)
    probe.stop.set()
    probe.thread.join(10)

    assert report.summary()["deleted"] == {
        "pipeline_executions": 500_000,
        "schedule_ticks": 500_000,
        "webhook_deliveries": 0,
    }
    assert report.finished
    assert _run_ids() == {probe.run_id}
    assert _tick_count(30) == 0
    assert len(report.purged[0].batches) >= 100 and report.longest_batch < 1.0, report.summary()
    assert probe.rounds >= 10, probe.rounds
    assert probe.errors == []
    assert max(probe.waits.values()) < 1.0, probe.waits
