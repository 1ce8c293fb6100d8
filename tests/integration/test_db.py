"""Runway's database connections against real Postgres."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from app import db

FALL_BACK = "SELECT timestamptz '2026-10-25 00:30Z', timestamptz '2026-10-25 01:30Z'"


def test_times_come_back_in_utc_whatever_the_sessions_zone(database_url: str) -> None:
    """Two instants an hour apart across Berlin's fall back are an hour apart in Python too
    (times of one zone subtract by their wall clocks)."""
    with db.unit_of_work() as conn:
        conn.execute(sa.text("SET LOCAL TIME ZONE 'Europe/Berlin'"))
        early, late = conn.execute(sa.text(FALL_BACK)).one()
    with db.hot_connection() as raw, raw.transaction():
        raw.execute("SET LOCAL TIME ZONE 'Europe/Berlin'")
        row = raw.execute(FALL_BACK).fetchone()
    assert row is not None
    for first, second in ((early, late), row):
        assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
        assert first.utcoffset() == second.utcoffset() == UTC.utcoffset(None)
        assert (second - first).total_seconds() == 3600
