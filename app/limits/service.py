"""Limit keys as the API and CLI see them: set, read, list, remove. One transaction per
call; runs that a change lets start are published after the commit."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from uuid import UUID

from app import db
from app.errors import InvalidInput, NotFound
from app.limits import gate, store

KEY_PATTERN = r"^[a-z0-9._:-]{1,64}$"
MAX_CONCURRENT = 1_000_000
MAX_RATE_COUNT = 10_000  # a rate keeps the start time of each of its last `count` starts
MAX_RATE_PERIOD_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Rate:
    count: int
    period_seconds: float


@dataclass(frozen=True)
class Limit:
    key: str
    max_concurrent: int | None
    rate: Rate | None
    running: int
    waiting: int


def check_key(key: str, field: str = "key", location: str = "path") -> None:
    if not re.fullmatch(KEY_PATTERN, key):
        raise InvalidInput(field, f"a limit key matches {KEY_PATTERN}", location)


def check_caps(max_concurrent: int | None, rate: Rate | None) -> None:
    """Caps within bounds: 1 to MAX_CONCURRENT runs; 1 to MAX_RATE_COUNT starts per period,
    a period more than 0 and at most MAX_RATE_PERIOD_SECONDS."""
    if max_concurrent is not None and not 1 <= max_concurrent <= MAX_CONCURRENT:
        raise InvalidInput("max_concurrent", f"must be from 1 to {MAX_CONCURRENT}, or null")
    if rate is None:
        return
    if not 1 <= rate.count <= MAX_RATE_COUNT:
        raise InvalidInput("rate.count", f"must be from 1 to {MAX_RATE_COUNT}")
    period = rate.period_seconds
    if not (math.isfinite(period) and 0 < period <= MAX_RATE_PERIOD_SECONDS):
        raise InvalidInput(
            "rate.period_seconds", f"must be more than 0 and at most {MAX_RATE_PERIOD_SECONDS}"
        )


def put(workspace_id: UUID, key: str, max_concurrent: int | None, rate: Rate | None) -> Limit:
    """Create or replace a key's limit; runs waiting on it that may now start are released."""
    check_key(key)
    check_caps(max_concurrent, rate)
    with db.unit_of_work() as conn:
        store.upsert(conn, workspace_id, key, max_concurrent, rate)
    gate.release(workspace_id, [key])
    return get(workspace_id, key)


def get(workspace_id: UUID, key: str) -> Limit:
    check_key(key)
    with db.unit_of_work() as conn:
        row = store.get(conn, workspace_id, key)
        if row is None:
            raise NotFound("limit", key)
        usage = store.usage(conn, workspace_id, [key])
    return _limit(row, usage.get(key, (0, 0)))


def list_all(workspace_id: UUID) -> list[Limit]:
    with db.unit_of_work() as conn:
        rows = store.list_for(conn, workspace_id)
        usage = store.usage(conn, workspace_id, [row.key for row in rows])
    return [_limit(row, usage.get(row.key, (0, 0))) for row in rows]


def delete(workspace_id: UUID, key: str) -> None:
    """Remove a key's limit: the runs waiting on it may start at once."""
    check_key(key)
    with db.unit_of_work() as conn:
        if not store.delete(conn, workspace_id, key):
            raise NotFound("limit", key)
    gate.release(workspace_id, [key])


def _limit(row: store.LimitRow, usage: tuple[int, int]) -> Limit:
    rate = None if row.rate_count is None else Rate(row.rate_count, row.rate_period_seconds)
    return Limit(row.key, row.max_concurrent, rate, *usage)
