"""Beat's lock under ticks longer than the lock's timeout: beat in this process, the due
streams made slow to record by a trigger in Postgres."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from app import app as celery_app
from app import db
from app.schedules import ticker
from app.schedules.beat import RunwayScheduler
from tests.fixtures.queries import copy_stream

LOCK_SECONDS = 3
BATCH_SECONDS = 0.8  # what the trigger adds to each batch of due streams


def _slow_ticks() -> None:
    """Each statement that records ticks (one a batch) sleeps BATCH_SECONDS."""
    with db.unit_of_work() as conn:
        conn.execute(
            sa.text(f"""
            CREATE FUNCTION slow_ticks() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep({BATCH_SECONDS}); RETURN NULL; END $$;
            CREATE TRIGGER slow_ticks AFTER INSERT ON schedule_ticks
            FOR EACH STATEMENT EXECUTE FUNCTION slow_ticks();""")
        )


def _still_due() -> int:
    with db.unit_of_work() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM research_streams WHERE next_scheduled_run <= now()")
            ).scalar_one()
        )


def test_a_tick_longer_than_the_lock_keeps_the_lead(
    isolated_queues: str,
    make_stream: Any,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """5 batches of due streams at 0.8 s each: 4 s of ticking against a 3 s lock. Beat stops
    a tick after a third of the lock's timeout and extends the lock before the next, so it
    leads throughout and every stream is handled."""
    first = make_stream(schedule_config={"interval_seconds": 3600, "overlap": "allow"})["id"]
    streams = 5 * ticker.BATCH
    copy_stream(first, streams - 1, datetime.now(UTC) - timedelta(seconds=1))
    _slow_ticks()
    lock_key = f"{isolated_queues}:lock"
    caplog.set_level(logging.INFO, logger="app.schedules.beat")

    scheduler = RunwayScheduler(celery_app, lock_key=lock_key, lock_timeout=LOCK_SECONDS)
    try:
        started = time.monotonic()
        scheduler.tick()
        token = redis_client.get(lock_key)
        assert token is not None
        while _still_due() and time.monotonic() - started < 30:
            # What celery beat does between ticks: sleep as long as the tick asked (its
            # minimum, here, as due streams are left).
            time.sleep(scheduler.tick())
            assert redis_client.get(lock_key) == token, "the lock changed hands"
        elapsed = time.monotonic() - started
    finally:
        scheduler.close()

    assert _still_due() == 0
    assert elapsed > LOCK_SECONDS  # the ticking did outlast one lock timeout
    assert "lost the lead" not in caplog.text
    assert caplog.text.count("beat: leading") == 1
    with db.unit_of_work() as conn:
        ticks = conn.execute(sa.text("SELECT count(*) FROM schedule_ticks")).scalar_one()
    assert ticks == streams
