"""schedule_config: validation and the fire times it implies (fixed clocks only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.errors import InvalidInput
from app.schedules.config import ScheduleConfig, parse

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_defaults() -> None:
    config = parse({"interval_seconds": 60})
    assert (config.enabled, config.timezone, config.overlap, config.misfire) == (
        True,
        "UTC",
        "skip",
        "run_once",
    )


def test_interval_first_slot_is_one_interval_away() -> None:
    assert parse({"interval_seconds": 60}).next_after(T0) == T0 + timedelta(seconds=60)


def test_interval_keeps_its_grid_after_downtime() -> None:
    config = parse({"interval_seconds": 60})
    anchor = T0
    assert config.next_after(T0 + timedelta(seconds=150), anchor) == T0 + timedelta(seconds=180)
    assert config.next_after(T0 + timedelta(seconds=180), anchor) == T0 + timedelta(seconds=240)


def test_upcoming_interval() -> None:
    config = parse({"interval_seconds": 30})
    assert config.upcoming(T0, 3, anchor=T0) == [T0 + timedelta(seconds=30 * k) for k in (1, 2, 3)]


def test_cron_in_time_zone() -> None:
    config = parse({"cron": "0 6 * * *", "timezone": "Asia/Kathmandu"})
    assert config.next_after(T0) == datetime(2026, 3, 2, 0, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"cron": "61 * * * *"}, "schedule_config.cron"),
        ({"cron": "0 6 * * *", "timezone": "Nowhere/City"}, "schedule_config.timezone"),
        ({"interval_seconds": -5}, "schedule_config.interval_seconds"),
        ({"interval_seconds": 10, "misfire": "later"}, "schedule_config.misfire"),
        ({"interval_seconds": 10, "colour": "red"}, "schedule_config.colour"),
        ({"interval_seconds": 10, "cron": "* * * * *"}, "schedule_config"),
        (
            {"interval_seconds": 10, "pause_after_failures": 0},
            "schedule_config.pause_after_failures",
        ),
    ],
)
def test_invalid_configs_name_their_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(raw)
    assert caught.value.field == field


def test_stored_config_round_trips() -> None:
    config = parse({"cron": "*/5 * * * *", "timezone": "Europe/Berlin", "overlap": "queue"})
    assert ScheduleConfig.model_validate(config.model_dump()) == config
