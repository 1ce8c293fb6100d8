"""PATCH /streams and the timing of a stream's schedule: only a change of `cron`,
`interval_seconds`, `timezone` or `enabled` moves `next_scheduled_run`; a changed interval or
a resumed stream keeps the grid its last run set; a due slot stays due for the ticker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from fastapi.testclient import TestClient

from app import db
from app.models import research_streams
from app.schedules import ticker
from tests.fixtures.queries import ticks_of


def set_times(stream_id: str, **values: datetime | None) -> None:
    """Set `next_scheduled_run` / `last_scheduled_run` as beat would have left them."""
    with db.unit_of_work() as conn:
        conn.execute(
            sa.update(research_streams)
            .where(research_streams.c.id == UUID(stream_id))
            .values(**values)
        )


def patch(api: TestClient, auth: dict[str, str], stream_id: str, **config: Any) -> Any:
    response = api.patch(f"/streams/{stream_id}", json={"schedule_config": config}, headers=auth)
    assert response.status_code == 200, response.text
    return response.json()


def next_run(stream: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(stream["next_scheduled_run"])


def whole_seconds(when: datetime) -> datetime:
    return when.replace(microsecond=0)


def test_patch_of_other_keys_leaves_next_run_where_it_was(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    for schedule in ({"interval_seconds": 3600}, {"cron": "0 6 * * 1", "timezone": "Asia/Tokyo"}):
        stream = make_stream(schedule_config=schedule)
        changes = [
            {"overlap": "queue"},
            {"misfire": "skip", "pause_after_failures": 3},
            {**schedule, "enabled": True},  # the same values again change nothing
        ]
        for change in changes:
            changed = patch(api, auth, stream["id"], **change)
            assert changed["next_scheduled_run"] == stream["next_scheduled_run"], change
            assert changed["upcoming"] == stream["upcoming"]


def test_a_due_slot_stays_due_through_a_patch(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    """Beat has not claimed the 06:00 slot yet when the overlap policy changes: the slot is
    still due, and the ticker fires it (or records it) instead of it vanishing."""
    stream = make_stream(schedule_config={"cron": "0 6 * * *"})
    now = datetime.now(UTC)
    due = now.replace(hour=6, minute=0, second=0, microsecond=0)
    due -= timedelta(days=1) if due > now else timedelta(0)
    set_times(stream["id"], next_scheduled_run=due)

    changed = patch(api, auth, stream["id"], overlap="allow")
    assert next_run(changed) == due

    ticker.tick(now=due + timedelta(seconds=1))
    assert [(tick.scheduled_for, tick.outcome) for tick in ticks_of(stream["id"])] == [
        (due, "fired")
    ]


def test_a_new_interval_counts_from_the_last_run(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream(schedule_config={"interval_seconds": 3600})
    last = whole_seconds(datetime.now(UTC)) - timedelta(minutes=10)
    set_times(stream["id"], last_scheduled_run=last, next_scheduled_run=last + timedelta(hours=1))

    faster = patch(api, auth, stream["id"], interval_seconds=900)
    assert next_run(faster) == last + timedelta(minutes=15)

    slower = patch(api, auth, stream["id"], interval_seconds=7200)
    assert next_run(slower) == last + timedelta(hours=2)


def test_a_new_interval_of_a_stream_that_never_ran_keeps_the_upcoming_slot(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream(schedule_config={"interval_seconds": 3600})
    first = next_run(stream)
    changed = patch(api, auth, stream["id"], interval_seconds=1200)
    assert next_run(changed) == first - timedelta(minutes=40)
    assert datetime.fromisoformat(changed["upcoming"][2]) == first


def test_a_resumed_stream_keeps_its_grid(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream(schedule_config={"interval_seconds": 3600})
    last = whole_seconds(datetime.now(UTC)) - timedelta(hours=2, minutes=30)
    set_times(stream["id"], last_scheduled_run=last)

    assert patch(api, auth, stream["id"], enabled=False)["next_scheduled_run"] is None
    resumed = patch(api, auth, stream["id"], enabled=True)
    assert next_run(resumed) == last + timedelta(hours=3)


def test_a_new_cron_or_time_zone_takes_effect_at_once(
    api: TestClient, auth: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream(schedule_config={"cron": "0 6 * * *"})
    assert next_run(stream).astimezone(UTC).hour == 6
    tokyo = patch(api, auth, stream["id"], timezone="Asia/Tokyo")
    assert next_run(tokyo).astimezone(UTC).hour == 21  # 06:00 in Tokyo
    hourly = patch(api, auth, stream["id"], cron="30 * * * *")
    assert next_run(hourly) - datetime.now(UTC) <= timedelta(hours=1)
    assert next_run(hourly).minute == 30
