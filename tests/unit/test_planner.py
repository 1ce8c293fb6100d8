"""The scheduling rules, as a pure function of config, slot, clock and live run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from app.schedules.config import parse
from app.schedules.planner import MAX_LISTED_MISSES, LiveRun, plan

T0 = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)
GRACE = timedelta(seconds=60)


def test_on_time_slot_fires() -> None:
    decided = plan(parse({"interval_seconds": 60}), T0, T0 + timedelta(seconds=1), None, GRACE)
    assert decided.fire == T0
    assert [(t.outcome, t.reason) for t in decided.ticks] == [("fired", None)]
    assert decided.next_run == T0 + timedelta(seconds=60)


def test_long_outage_is_listed_in_part_and_fires_once() -> None:
    config = parse({"interval_seconds": 1})
    decided = plan(config, T0, T0 + timedelta(days=1), None, GRACE)
    assert len(decided.ticks) == MAX_LISTED_MISSES + 1
    assert decided.ticks[0].reason is not None and "at least" in decided.ticks[0].reason
    assert decided.fire is not None
    assert decided.next_run == T0 + timedelta(days=1, seconds=1)


def test_queue_overlap_waits_for_the_live_run() -> None:
    live = LiveRun(uuid4(), "running")
    decided = plan(parse({"interval_seconds": 60, "overlap": "queue"}), T0, T0, live, GRACE)
    assert (decided.fire, decided.after_run) == (T0, live.id)


def test_skip_overlap_counts_a_pending_run_as_live() -> None:
    live = LiveRun(uuid4(), "pending")
    decided = plan(parse({"interval_seconds": 60}), T0, T0, live, GRACE)
    assert decided.fire is None
    assert decided.ticks[0].outcome == "skipped_overlap"


def test_cron_across_spring_forward_fires_at_the_end_of_the_gap() -> None:
    config = parse({"cron": "30 2 * * *", "timezone": "Europe/Berlin"})
    slot = config.next_after(datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    assert slot == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST: 02:30 does not exist
    decided = plan(config, slot, slot, None, GRACE)
    assert decided.next_run == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)  # 02:30 CEST


def test_cron_across_fall_back_fires_once() -> None:
    config = parse({"cron": "30 2 * * *", "timezone": "Europe/Berlin"})
    slot = config.next_after(datetime(2026, 10, 24, 12, 0, tzinfo=UTC))
    assert slot == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30 (CEST)
    decided = plan(config, slot, slot + timedelta(hours=1), None, GRACE)
    assert decided.next_run == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)  # 02:30 CET next day
