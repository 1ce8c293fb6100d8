"""Backfill (`POST /streams/{id}/backfill`, `runway streams backfill`, app/schedules/backfill.py)
against real Postgres and Redis.

The slots a backfill fills are the stream's own: its cron read in its time zone with the DST
rules of app/schedules/cron.py (a wall time that happens twice fires once, at its first
occurrence; the wall times a spring-forward gap skips fire once, when the gap ends), or its
interval on its grid. The expected UTC slots across the 2026 Europe/Berlin changes are worked
out by hand in the constants below. Each test checks the rows written (runs and ticks, read
straight from Postgres) and what the API and CLI answer. Runs go to queues of the test's own
(`isolated_queues`) unless a test lets the in-process worker run them.
"""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from httpx import Response

from app import db, housekeeping, workspaces
from app.limits import service as limits
from app.models import research_streams
from app.runs import executor
from app.runs import service as runs_service
from app.schedules import backfill, ticker
from app.states import RunStatus, RunType
from app.streams.store import BACKFILLED
from tests.fixtures.queries import runs_of, set_run, ticks_of
from tests.fixtures.services import run_row, wait_for_status
from tests.integration.test_cli import fails, ok_json, runway

HOURLY_BERLIN = {"cron": "0 * * * *", "timezone": "Europe/Berlin"}
HOURLY_UTC = {"cron": "0 * * * *"}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# Spring forward, 2026-03-29: at 02:00 CET (01:00Z) clocks jump to 03:00 CEST. From 00:00 CET
# to 06:00 CEST is five real hours. Wall 00:00 and 01:00 are CET (+01:00); wall 02:00 does not
# exist and fires when the gap ends (03:00 CEST = 01:00Z), and wall 03:00 CEST is that same
# instant, so the two collapse into one slot; 04:00 and 05:00 are CEST (+02:00); 06:00 CEST
# (04:00Z) is `to`, excluded.
SPRING_FROM, SPRING_TO = "2026-03-29T00:00:00+01:00", "2026-03-29T06:00:00+02:00"
SPRING_SLOTS = [
    utc("2026-03-28T23:00:00+00:00"),  # 00:00 CET
    utc("2026-03-29T00:00:00+00:00"),  # 01:00 CET
    utc("2026-03-29T01:00:00+00:00"),  # 02:00 (skipped) and 03:00 CEST: once
    utc("2026-03-29T02:00:00+00:00"),  # 04:00 CEST
    utc("2026-03-29T03:00:00+00:00"),  # 05:00 CEST
]
# Fall back, 2026-10-25: at 03:00 CEST (01:00Z) clocks go back to 02:00 CET, so wall 02:00
# happens twice: 00:00Z (CEST) and 01:00Z (CET). From 00:00 CEST (22:00Z the day before) to
# 05:00 CET (04:00Z) is six real hours but five slots: the repeated 02:00 (01:00Z) never fires.
AUTUMN_FROM, AUTUMN_TO = "2026-10-25T00:00:00+02:00", "2026-10-25T05:00:00+01:00"
AUTUMN_SLOTS = [
    utc("2026-10-24T22:00:00+00:00"),  # 00:00 CEST
    utc("2026-10-24T23:00:00+00:00"),  # 01:00 CEST
    utc("2026-10-25T00:00:00+00:00"),  # 02:00 CEST, first occurrence
    utc("2026-10-25T02:00:00+00:00"),  # 03:00 CET
    utc("2026-10-25T03:00:00+00:00"),  # 04:00 CET
]


def post_backfill(
    api: TestClient,
    auth: dict[str, str],
    stream_id: str,
    start: str,
    end: str,
    **extra: Any,
) -> Response:
    body = {"from": start, "to": end, **extra}
    return api.post(f"/streams/{stream_id}/backfill", json=body, headers=auth)


def accepted(response: Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    answer["slots"] = [utc(slot) for slot in answer["slots"]]
    return answer


def refused(response: Response) -> list[Any]:
    """The `loc` of a 422's first problem."""
    assert response.status_code == 422, response.text
    location: list[Any] = response.json()["detail"][0]["loc"]
    return location


def test_dry_run_lists_the_spring_dst_slots_and_writes_nothing(
    api: TestClient, auth: dict[str, str], make_stream: Any, isolated_queues: str
) -> None:
    stream = make_stream(schedule_config=HOURLY_BERLIN)
    answer = accepted(post_backfill(api, auth, stream["id"], SPRING_FROM, SPRING_TO, dry_run=True))

    assert answer == {"slots": SPRING_SLOTS, "created": 5, "existing": 0, "dry_run": True}
    assert runs_of(stream["id"]) == [] and ticks_of(stream["id"]) == []
    assert api.get(f"/streams/{stream['id']}/ticks", headers=auth).json() == []


def test_backfill_across_spring_forward_creates_one_scheduled_run_and_tick_per_slot(
    api: TestClient, auth: dict[str, str], make_stream: Any, isolated_queues: str
) -> None:
    stream = make_stream(schedule_config=HOURLY_BERLIN, params={"depth": 1})
    answer = accepted(post_backfill(api, auth, stream["id"], SPRING_FROM, SPRING_TO))

    assert answer == {"slots": SPRING_SLOTS, "created": 5, "existing": 0, "dry_run": False}
    made = runs_of(stream["id"])
    assert [run.scheduled_for for run in made] == SPRING_SLOTS
    for run in made:
        assert (run.run_type, run.status, run.pipeline, run.params) == (
            "scheduled",
            "pending",
            "builtin.noop",
            {"depth": 1},
        )
        shown = api.get(f"/runs/{run.id}", headers=auth).json()
        assert (shown["run_type"], utc(shown["scheduled_for"])) == ("scheduled", run.scheduled_for)

    ticks = api.get(f"/streams/{stream['id']}/ticks", headers=auth).json()
    by_slot = {run.scheduled_for: str(run.id) for run in made}
    assert sorted(
        (utc(tick["scheduled_for"]), tick["outcome"], tick["execution_id"], tick["reason"])
        for tick in ticks
    ) == [(slot, "backfilled", by_slot[slot], BACKFILLED) for slot in SPRING_SLOTS]


def test_the_same_backfill_again_creates_nothing_and_a_dry_run_says_so(
    api: TestClient, auth: dict[str, str], make_stream: Any, isolated_queues: str
) -> None:
    stream = make_stream(schedule_config=HOURLY_BERLIN)
    accepted(post_backfill(api, auth, stream["id"], SPRING_FROM, SPRING_TO))
    first = {run.id for run in runs_of(stream["id"])}

    again = accepted(post_backfill(api, auth, stream["id"], SPRING_FROM, SPRING_TO))
    dry = accepted(post_backfill(api, auth, stream["id"], SPRING_FROM, SPRING_TO, dry_run=True))

    assert again == {"slots": SPRING_SLOTS, "created": 0, "existing": 5, "dry_run": False}
    assert dry == {"slots": SPRING_SLOTS, "created": 0, "existing": 5, "dry_run": True}
    assert {run.id for run in runs_of(stream["id"])} == first
    assert len(ticks_of(stream["id"])) == 5


def test_backfill_across_fall_back_fires_the_repeated_hour_once_and_the_runs_complete(
    api: TestClient, auth: dict[str, str], make_stream: Any, worker: Any
) -> None:
    stream = make_stream(schedule_config=HOURLY_BERLIN)
    # A wider range overlapping the first: only the new slots get runs.
    overlap_from = "2026-10-25T01:00:00+02:00"
    first = accepted(post_backfill(api, auth, stream["id"], overlap_from, "2026-10-25T02:30:00Z"))
    assert first["slots"] == AUTUMN_SLOTS[1:4] and first["created"] == 3

    answer = accepted(post_backfill(api, auth, stream["id"], AUTUMN_FROM, AUTUMN_TO))

    assert answer == {"slots": AUTUMN_SLOTS, "created": 2, "existing": 3, "dry_run": False}
    made = runs_of(stream["id"])
    assert [run.scheduled_for for run in made] == AUTUMN_SLOTS
    for run in made:
        wait_for_status(run.id, "completed")
    ticks = ticks_of(stream["id"])
    assert [(tick.scheduled_for, tick.outcome, tick.execution_id) for tick in ticks] == [
        (run.scheduled_for, "backfilled", run.id) for run in made
    ]


def test_more_than_1000_slots_is_a_422_naming_to_and_writes_nothing(
    api: TestClient, auth: dict[str, str], make_stream: Any, isolated_queues: str
) -> None:
    stream = make_stream(schedule_config=HOURLY_UTC)
    end = datetime(2026, 11, 1, tzinfo=UTC)
    start = end - timedelta(hours=1000)
    exactly = accepted(
        post_backfill(api, auth, stream["id"], start.isoformat(), end.isoformat(), dry_run=True)
    )
    assert (len(exactly["slots"]), exactly["created"]) == (1000, 1000)

    over = (start - timedelta(hours=1)).isoformat()
    for dry_run in (True, False):
        response = post_backfill(api, auth, stream["id"], over, end.isoformat(), dry_run=dry_run)
        assert refused(response) == ["body", "to"]
        assert "1000" in response.json()["detail"][0]["msg"]
    assert runs_of(stream["id"]) == [] and ticks_of(stream["id"]) == []


def test_bad_backfill_requests_are_refused_naming_the_field(
    api: TestClient, auth: dict[str, str], make_stream: Any, isolated_queues: str
) -> None:
    stream = make_stream(schedule_config=HOURLY_UTC)["id"]
    past = "2026-03-01T00:00:00Z"
    cases: list[tuple[dict[str, Any], list[Any]]] = [
        ({"from": "2026-03-01T00:00:00", "to": "2026-03-01T05:00:00Z"}, ["body", "from"]),
        ({"from": past, "to": "2026-03-01T05:00:00"}, ["body", "to"]),
        ({"from": past, "to": "2026-03-01T05:00:00+0100"}, ["body", "to"]),
        ({"from": past, "to": "2026-03-01T05:00Z"}, ["body", "to"]),
        ({"start": past, "to": "2026-03-01T05:00:00Z"}, ["body", "from"]),
        ({"from": 1772323200, "to": "2026-03-01T05:00:00Z"}, ["body", "from"]),
        ({"to": "2026-03-01T05:00:00Z"}, ["body", "from"]),
        ({"from": past, "to": "2026-03-01T05:00:00Z", "dry_run": "yes"}, ["body", "dry_run"]),
        ({"from": past, "to": "2026-03-01T05:00:00Z", "surprise": 1}, ["body", "surprise"]),
    ]
    for body, location in cases:
        response = api.post(f"/streams/{stream}/backfill", json=body, headers=auth)
        assert refused(response) == location, body
    assert runs_of(stream) == [] and ticks_of(stream) == []


def test_an_empty_range_has_no_slots_and_a_future_to_stops_at_now(
    api: TestClient, auth: dict[str, str], make_stream: Any, isolated_queues: str
) -> None:
    stream = make_stream(schedule_config=HOURLY_UTC)["id"]
    past = "2026-03-01T00:00:00Z"
    for start, end in ((past, past), ("2026-03-02T00:00:00Z", past)):
        response = post_backfill(api, auth, stream, start, end)
        assert response.status_code == 202, response.text
        assert response.json() == {"slots": [], "created": 0, "existing": 0, "dry_run": False}

    now = datetime.now(UTC)
    start = (now - timedelta(hours=3)).isoformat()
    future = (now + timedelta(hours=5)).isoformat()
    answer = post_backfill(api, auth, stream, start, future, dry_run=True)
    assert answer.status_code == 202, answer.text
    slots = [datetime.fromisoformat(slot) for slot in answer.json()["slots"]]
    assert len(slots) == 3 and all(slot <= datetime.now(UTC) for slot in slots)
    assert runs_of(stream) == [] and ticks_of(stream) == []


def test_a_stream_without_a_schedule_is_409_and_another_workspace_s_stream_404(
    api: TestClient, auth: dict[str, str], make_stream: Any, isolated_queues: str
) -> None:
    on_demand = make_stream()["id"]
    response = post_backfill(api, auth, on_demand, "2026-03-01T00:00:00Z", "2026-03-01T05:00:00Z")
    assert response.status_code == 409, response.text
    assert "no schedule" in response.json()["detail"]

    scheduled = make_stream(schedule_config=HOURLY_UTC)["id"]
    other = {"Authorization": f"Bearer {workspaces.create_key('globex', 'tests')[1]}"}
    for stream_id in (scheduled, "00000000-0000-0000-0000-000000000001"):
        response = post_backfill(
            api, other, stream_id, "2026-03-01T00:00:00Z", "2026-03-01T05:00:00Z"
        )
        assert response.status_code == 404, response.text
    assert runs_of(scheduled) == [] and ticks_of(scheduled) == []


def test_an_interval_stream_s_slots_lie_on_its_grid(
    api: TestClient, auth: dict[str, str], make_stream: Any, isolated_queues: str
) -> None:
    step = timedelta(seconds=433)
    stream = make_stream(schedule_config={"interval_seconds": 433})
    anchor = utc(stream["next_scheduled_run"])
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=3, minutes=17, seconds=5), now - timedelta(minutes=41)

    answer = accepted(post_backfill(api, auth, stream["id"], start.isoformat(), end.isoformat()))

    slots = answer["slots"]
    assert all((slot - anchor) % step == timedelta(0) for slot in slots), (anchor, slots)
    assert slots[0] >= start and slots[0] - step < start
    assert slots[-1] < end and slots[-1] + step >= end
    assert all(later - earlier == step for earlier, later in itertools.pairwise(slots))
    assert answer["created"] == len(slots) == len(runs_of(stream["id"]))
    assert utc(api.get(f"/streams/{stream['id']}", headers=auth).json()["next_scheduled_run"]) == (
        anchor
    )


def test_a_missed_slot_becomes_backfilled_with_its_run(
    api: TestClient, auth: dict[str, str], make_stream: Any, isolated_queues: str
) -> None:
    stream = make_stream(schedule_config={**HOURLY_UTC, "misfire": "skip"})
    first = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    with db.unit_of_work() as conn:
        conn.execute(
            sa.update(research_streams)
            .where(research_streams.c.id == UUID(stream["id"]))
            .values(next_scheduled_run=first)
        )
    ticker.tick(now=first + timedelta(hours=3, minutes=30))  # beat was away: 4 slots missed
    slots = [first + timedelta(hours=hour) for hour in range(4)]
    assert [(tick.scheduled_for, tick.outcome) for tick in ticks_of(stream["id"])] == [
        (slot, "missed") for slot in slots
    ]
    assert runs_of(stream["id"]) == []

    answer = accepted(
        post_backfill(
            api, auth, stream["id"], first.isoformat(), (first + timedelta(hours=4)).isoformat()
        )
    )

    assert (answer["slots"], answer["created"], answer["existing"]) == (slots, 4, 0)
    made = runs_of(stream["id"])
    ticks = api.get(f"/streams/{stream['id']}/ticks", headers=auth).json()
    assert sorted(
        (utc(tick["scheduled_for"]), tick["outcome"], tick["execution_id"]) for tick in ticks
    ) == [(run.scheduled_for, "backfilled", str(run.id)) for run in made]


def test_backfilled_runs_wait_for_their_limit_key_and_keep_the_stream_s_priority(
    api: TestClient,
    auth: dict[str, str],
    make_stream: Any,
    workspace_id: UUID,
    isolated_queues: str,
) -> None:
    limits.put(workspace_id, "k", 1, None)
    low = make_stream(schedule_config=HOURLY_UTC, limit_keys=["k"], priority="low")
    high = UUID(make_stream(limit_keys=["k"], priority="high")["id"])
    accepted(post_backfill(api, auth, low["id"], "2026-03-02T06:00:00Z", "2026-03-02T09:00:00Z"))
    backfilled = [run.id for run in runs_of(low["id"])]
    assert len(backfilled) == 3

    def released(run_ids: list[UUID]) -> list[UUID]:
        return [
            r for r in run_ids if (row := run_row(r)).status == "pending" and not row.waiting_for
        ]

    [holder] = released(backfilled)
    waiting = [run_id for run_id in backfilled if run_id != holder]
    for run_id in backfilled:
        shown = api.get(f"/runs/{run_id}", headers=auth).json()
        assert (shown["priority"], shown["limit_keys"]) == ("low", ["k"])
    for run_id in waiting:
        shown = api.get(f"/runs/{run_id}", headers=auth).json()
        assert shown["waiting_for"] == {"kind": "concurrency", "key": "k", "until": None}
    urgent = runs_service.create(workspace_id, high, RunType.MANUAL, None).run.id
    assert run_row(urgent).waiting_for is not None

    assert executor.execute(holder, "w", gated=True) is RunStatus.COMPLETED
    assert released([*waiting, urgent]) == [urgent]  # high goes before the older low ones
    assert executor.execute(urgent, "w", gated=True) is RunStatus.COMPLETED
    assert len(released(waiting)) == 1


def backfill_at_once(
    callers: int, workspace_id: UUID, stream_id: UUID, start: datetime, end: datetime
) -> list[backfill.Backfill]:
    """`callers` threads call backfill over one range, released together by a barrier."""
    barrier = threading.Barrier(callers)
    answers: list[backfill.Backfill] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            barrier.wait(10)
            answers.append(backfill.backfill(workspace_id, stream_id, start, end))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(answers) == callers, errors
    return answers


def test_concurrent_backfills_of_one_range_create_each_slot_s_run_once(
    make_stream: Any, workspace_id: UUID, isolated_queues: str
) -> None:
    stream_id = UUID(make_stream(schedule_config=HOURLY_UTC)["id"])
    end = datetime(2026, 6, 1, tzinfo=UTC)
    for callers in (2, 2, 4):
        start = end - timedelta(hours=300)
        answers = backfill_at_once(callers, workspace_id, stream_id, start, end)
        assert sum(answer.created for answer in answers) == 300, [a.created for a in answers]
        assert all(answer.created + answer.existing == 300 for answer in answers)
        assert all(len(answer.slots) == 300 for answer in answers)
        end = start

    made = runs_of(stream_id)
    slots = [run.scheduled_for for run in made]
    assert len(slots) == len(set(slots)) == 900
    ticks = ticks_of(stream_id)
    by_slot = {run.scheduled_for: run.id for run in made}
    assert len(ticks) == 900
    assert all(
        tick.outcome == "backfilled" and tick.execution_id == by_slot[tick.scheduled_for]
        for tick in ticks
    )


def test_cli_backfill_dry_run_then_for_real_prints_slots_and_counts(
    make_stream: Any, isolated_queues: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stream_id = make_stream(schedule_config=HOURLY_BERLIN)["id"]
    argv = ["streams", "backfill", stream_id, "--from", SPRING_FROM, "--to", SPRING_TO]

    status, out, err = runway(capsys, *argv, "--dry-run")
    assert (status, err) == (0, "")
    shown = [slot.strftime("%Y-%m-%d %H:%M:%SZ") for slot in SPRING_SLOTS]
    assert out.splitlines() == ["SLOT", *shown, "5 slot(s): would create 5 run(s), 0 had one"]
    assert runs_of(stream_id) == [] and ticks_of(stream_id) == []

    status, out, err = runway(capsys, *argv)
    assert (status, err) == (0, "")
    assert out.splitlines() == ["SLOT", *shown, "5 slot(s): created 5 run(s), 0 had one"]
    assert [run.scheduled_for for run in runs_of(stream_id)] == SPRING_SLOTS

    again = ok_json(capsys, *argv)
    assert [utc(slot) for slot in again.pop("slots")] == SPRING_SLOTS
    assert again == {"created": 0, "existing": 5, "dry_run": False}


def test_cli_backfill_bad_times_exit_1_with_one_line(
    make_stream: Any, isolated_queues: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stream_id = make_stream(schedule_config=HOURLY_UTC)["id"]
    base = ["streams", "backfill", stream_id]

    assert "is not an ISO 8601 time" in fails(
        capsys, *base, "--from", "yesterday", "--to", SPRING_TO
    )
    assert "has no UTC offset" in fails(
        capsys, *base, "--from", "2026-03-29T00:00:00", "--to", SPRING_TO
    )
    assert "not found" in fails(
        capsys,
        "streams",
        "backfill",
        "00000000-0000-0000-0000-000000000001",
        "--from",
        SPRING_FROM,
        "--to",
        SPRING_TO,
    )
    assert runs_of(stream_id) == []


def test_a_slot_whose_run_was_cleaned_up_gets_a_backfilled_tick_naming_the_new_run(
    api: TestClient, auth: dict[str, str], make_stream: Any, isolated_queues: str
) -> None:
    stream = make_stream(schedule_config=HOURLY_UTC)
    slot = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    with db.unit_of_work() as conn:
        conn.execute(
            sa.update(research_streams)
            .where(research_streams.c.id == UUID(stream["id"]))
            .values(next_scheduled_run=slot)
        )
    ticker.tick(now=slot + timedelta(seconds=30))
    [fired] = runs_of(stream["id"])
    set_run(fired.id, status="completed", completed_at=datetime.now(UTC) - timedelta(minutes=1))
    cleanup = {"status": "completed", "older_than_days": 0}
    assert api.post("/runs/cleanup", json=cleanup, headers=auth).json() == {"deleted": 1}

    answer = accepted(
        post_backfill(
            api, auth, stream["id"], slot.isoformat(), (slot + timedelta(hours=1)).isoformat()
        )
    )

    assert (answer["created"], answer["existing"]) == (1, 0)
    [again] = runs_of(stream["id"])
    [tick] = ticks_of(stream["id"])
    assert (tick.outcome, tick.execution_id) == ("backfilled", again.id)


def test_backfilled_runs_are_never_late(
    api: TestClient, auth: dict[str, str], make_stream: Any, isolated_queues: str
) -> None:
    """Their slots are past by design: a `run.late` for each would be noise."""
    config = {**HOURLY_UTC, "late_after_seconds": 1}
    stream = make_stream(schedule_config=config)["id"]
    hook = {"url": "http://127.0.0.1:9/hook", "events": ["run.late"]}
    assert api.post("/webhooks", json=hook, headers=auth).status_code == 201
    answer = post_backfill(api, auth, stream, "2026-03-01T00:00:00Z", "2026-03-01T05:00:00Z")
    assert answer.json()["created"] == 5
    assert housekeeping.mark_late() == 0


def test_a_paused_interval_stream_that_never_fired_has_no_grid_to_backfill(
    api: TestClient, auth: dict[str, str], make_stream: Any, isolated_queues: str
) -> None:
    stream = make_stream(schedule_config={"interval_seconds": 3600, "enabled": False})["id"]
    response = post_backfill(api, auth, stream, "2026-03-01T00:00:00Z", "2026-03-01T05:00:00Z")
    assert response.status_code == 409, response.text
    assert "enable it first" in response.json()["detail"]
