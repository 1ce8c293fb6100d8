"""An interval's grid runs both ways from its anchor: any slot of it places the next one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.schedules.config import parse

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
EVERY_15 = parse({"interval_seconds": 900})


def test_the_next_slot_is_on_the_grid_of_an_earlier_anchor() -> None:
    assert EVERY_15.next_after(T0 + timedelta(minutes=20), anchor=T0) == T0 + timedelta(minutes=30)
    assert EVERY_15.next_after(T0 + timedelta(minutes=30), anchor=T0) == T0 + timedelta(minutes=45)


def test_the_next_slot_is_on_the_grid_of_a_later_anchor() -> None:
    after = T0 - timedelta(minutes=50)
    assert EVERY_15.next_after(after, anchor=T0) == T0 - timedelta(minutes=45)
    assert EVERY_15.next_after(T0 - timedelta(minutes=45), anchor=T0) == T0 - timedelta(minutes=30)


def test_without_an_anchor_a_new_grid_starts() -> None:
    assert EVERY_15.next_after(T0) == T0 + timedelta(minutes=15)
