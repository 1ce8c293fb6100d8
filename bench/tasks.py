"""Bare Celery tasks for the throughput benchmark's ceiling and floor (loaded with --include)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import redis

from app import app
from app.settings import get_settings
from scripts.reachable import postgres_url

DONE_KEY = "bench:done"
_connection: dict[str, Any] = {}


def _database() -> psycopg.Connection[Any]:
    if "pg" not in _connection:
        from sqlalchemy.engine import make_url

        name = make_url(get_settings().database_url).database or "postgres"
        _connection["pg"] = psycopg.connect(postgres_url(name))
    conn: psycopg.Connection[Any] = _connection["pg"]
    return conn


@app.task(name="bench.noop")
def noop() -> None:
    """The ceiling: Celery with nothing to do."""


@app.task(name="bench.commits")
def commits(row: int, count: int) -> None:
    """The floor: `count` durable commits, each one UPDATE, as a run's hot path makes."""
    conn = _database()
    for _ in range(count):
        conn.execute("UPDATE bench_rows SET touched = touched + 1 WHERE id = %s", (row,))
        conn.commit()


@app.task(name="bench.mark")
def mark() -> None:
    """Published last: when it runs, the queue in front of it has drained."""
    redis.Redis.from_url(get_settings().redis_url).set(DONE_KEY, time.time())
