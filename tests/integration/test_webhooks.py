"""Signed webhooks, end to end: the /webhooks API, the events the changes write into the
outbox (`webhook_deliveries`), and their delivery to real HTTP receivers.

Each test gets its own Postgres database (tests/fixtures/database.py), the HTTP API as a
TestClient, and, when it needs deliveries, a `Deliverer` started in this process (as beat
runs one) after any setting the test changes. Receivers are local HTTP servers
(tests/fixtures/receivers.py) that record what they get and answer with programmed statuses.
Runs are executed by the in-process Celery worker where the test says so; tests whose runs
must stay pending use a queue of their own (`isolated_queues`) so that no worker takes them.
The schedule ticker and the late pass are called by hand. Every wait has a deadline.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app import db, housekeeping, retention, workspaces
from app.models import pipeline_executions, research_streams
from app.schedules import ticker
from app.settings import get_settings
from app.webhooks import signing, store
from app.webhooks.deliverer import LEASE_SECONDS, Deliverer
from tests.fixtures.queries import runs_of, ticks_of
from tests.fixtures.receivers import Receiver, Receivers
from tests.fixtures.services import unpublished_run, wait_for, wait_for_status

Headers = dict[str, str]
Json = dict[str, Any]

EVENT_KEYS = {"id", "type", "created_at", "workspace_id", "data"}
DELIVERY_DEADLINE = 20.0


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
def setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """Changes one RUNWAY_* setting for this test only."""

    def change(name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield change
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def start_deliverer(database_url: str) -> Iterator[Callable[[], Deliverer]]:
    """Starts a Deliverer like beat's (with the settings as they are now); all stop at the end."""
    started: list[Deliverer] = []

    def start() -> Deliverer:
        deliverer = Deliverer(poll_seconds=0.1)
        deliverer.start()
        started.append(deliverer)
        return deliverer

    yield start
    for deliverer in started:
        deliverer.stop()


Listen = Callable[[list[str]], tuple[Receiver, Json]]


@pytest.fixture
def listen(
    api: TestClient,
    auth: Headers,
    receivers: Receivers,
    start_deliverer: Callable[[], Deliverer],
) -> Listen:
    """A receiver, a webhook for `events` sending to it, and a deliverer running."""

    def start(events: list[str]) -> tuple[Receiver, Json]:
        receiver = receivers.start()
        created = create_webhook(api, auth, receiver.url, events)
        start_deliverer()
        return receiver, created

    return start


def create_webhook(
    api: TestClient, auth: Headers, url: str, events: list[str], **fields: Any
) -> Json:
    response = api.post("/webhooks", json={"url": url, "events": events, **fields}, headers=auth)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


def deliveries(api: TestClient, auth: Headers, webhook_id: str, limit: int = 50) -> list[Json]:
    response = api.get(f"/webhooks/{webhook_id}/deliveries?limit={limit}", headers=auth)
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()["items"]
    return items


def wait_for_delivery(
    api: TestClient, auth: Headers, webhook_id: str, check: Callable[[Json], bool], what: str
) -> Json:
    """The webhook's newest delivery, once `check` holds for it."""

    def newest() -> Json | None:
        found = deliveries(api, auth, webhook_id, 1)
        return found[0] if found and check(found[0]) else None

    return wait_for(newest, DELIVERY_DEADLINE, what)


def outbox(**where: Any) -> list[Any]:
    """Rows of webhook_deliveries matching `where` (column = value), oldest first."""
    conditions = " AND ".join(f"{column} = :{column}" for column in where) or "true"
    with db.unit_of_work() as conn:
        return list(
            conn.execute(
                sa.text(f"SELECT * FROM webhook_deliveries WHERE {conditions} ORDER BY created_at"),
                where,
            )
        )


def verified(receiver: Receiver, secret: str) -> list[Json]:
    """Every event the receiver got, each checked: signature, event id header, body shape."""
    events: list[Json] = []
    for request in receiver.received:
        header = request.headers.get(signing.SIGNATURE_HEADER.lower(), "")
        assert signing.verify(secret, request.body, header), f"bad signature {header!r}"
        event: Json = json.loads(request.body)
        assert set(event) == EVENT_KEYS
        assert request.headers[signing.EVENT_ID_HEADER.lower()] == event["id"]
        events.append(event)
    return events


def wait_for_event(receiver: Receiver, secret: str, event_type: str) -> Json:
    """The first verified event of `event_type` the receiver gets."""
    receiver.wait_for(
        lambda got: any(json.loads(item.body)["type"] == event_type for item in got),
        DELIVERY_DEADLINE,
    )
    return next(event for event in verified(receiver, secret) if event["type"] == event_type)


def tick_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Call the ticker, as beat does, until `check` holds."""
    wait_for(lambda: ticker.tick() is not None and check(), timeout, what)


def set_stream(stream_id: str, **values: Any) -> None:
    with db.unit_of_work() as conn:
        conn.execute(
            sa.update(research_streams)
            .where(research_streams.c.id == UUID(stream_id))
            .values(**values)
        )


def other_workspace_auth() -> Headers:
    return {"Authorization": f"Bearer {workspaces.create_key('other', 'tests')[1]}"}


# --- the API --------------------------------------------------------------------------------


def test_create_shows_the_secret_once_list_hides_it_and_delete_removes_it(
    api: TestClient, auth: Headers, receivers: Receivers
) -> None:
    url = receivers.start().url
    created = create_webhook(api, auth, url, ["run.failed", "run.completed"], description="ops")

    assert created["secret"].startswith("whsec_")
    assert created["url"] == url
    assert sorted(created["events"]) == ["run.completed", "run.failed"]
    listed = api.get("/webhooks", headers=auth)
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [created["id"]]
    assert created["secret"] not in listed.text
    assert "secret" not in listed.json()["items"][0]

    assert api.delete(f"/webhooks/{created['id']}", headers=auth).status_code == 204
    assert api.delete(f"/webhooks/{created['id']}", headers=auth).status_code == 404
    assert api.get("/webhooks", headers=auth).json()["items"] == []


def test_another_workspace_can_neither_see_nor_touch_a_webhook(
    api: TestClient, auth: Headers, receivers: Receivers
) -> None:
    created = create_webhook(api, auth, receivers.start().url, ["run.failed"])
    other = other_workspace_auth()
    webhook = f"/webhooks/{created['id']}"

    assert api.get("/webhooks", headers=other).json()["items"] == []
    assert api.get(f"{webhook}/deliveries", headers=other).status_code == 404
    assert api.post(f"{webhook}/test", headers=other).status_code == 404
    assert api.delete(webhook, headers=other).status_code == 404

    assert [item["id"] for item in api.get("/webhooks", headers=auth).json()["items"]] == [
        created["id"]
    ]
    assert outbox() == []  # the other workspace's ping wrote nothing


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/hook", "events": ["run.failed"]}, "url"),
        ({"url": "http://user:pw@example.com/hook", "events": ["run.failed"]}, "url"),
        ({"url": "http://example.com/hook", "events": ["run.exploded"]}, "events"),
        ({"url": "http://example.com/hook", "events": []}, "events"),
        ({"url": "http://example.com/hook", "events": ["run.failed", "run.failed"]}, "events"),
        (
            {"url": "http://example.com/hook", "events": ["run.failed"], "description": "x" * 501},
            "description",
        ),
        ({"url": "http://example.com/hook", "events": ["run.failed"], "colour": "red"}, "colour"),
        (
            {"url": "http://example.com/hook", "events": ["run.failed"], "description": "a\x00b"},
            "description",
        ),
    ],
    ids=[
        "ftp-url",
        "credentials",
        "unknown-event",
        "no-events",
        "duplicate-events",
        "long-description",
        "extra-field",
        "nul-in-description",
    ],
)
def test_invalid_webhook_is_422_naming_the_field_and_writes_nothing(
    api: TestClient, auth: Headers, body: Json, field: str
) -> None:
    response = api.post("/webhooks", json=body, headers=auth)

    assert response.status_code == 422, response.text
    locations = [error["loc"] for error in response.json()["detail"]]
    assert any(loc[:1] == ["body"] and field in loc[1:] for loc in locations), locations
    if field in ("url", "description", "colour"):
        assert any(loc[-1] == field for loc in locations), locations
    assert api.get("/webhooks", headers=auth).json()["items"] == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/hook",
        "http://localhost/hook",
        "http://10.0.0.1/",
        "http://169.254.169.254/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://127.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://100.64.0.1/",
    ],
)
def test_private_addresses_are_refused_at_create_unless_allowed(
    api: TestClient,
    auth: Headers,
    receivers: Receivers,
    setting: Callable[[str, str], None],
    url: str,
) -> None:
    setting("RUNWAY_WEBHOOK_ALLOW_PRIVATE", "false")
    receiver = receivers.start()

    response = api.post(
        "/webhooks",
        json={"url": url.format(port=receiver.port), "events": ["run.failed"]},
        headers=auth,
    )

    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["body", "url"]]
    assert api.get("/webhooks", headers=auth).json()["items"] == []


def test_a_private_address_allowed_at_create_is_refused_at_delivery_once_disallowed(
    api: TestClient,
    auth: Headers,
    receivers: Receivers,
    setting: Callable[[str, str], None],
    start_deliverer: Callable[[], Deliverer],
) -> None:
    receiver = receivers.start()
    created = create_webhook(api, auth, receiver.url, ["run.failed"])  # allowed in tests
    setting("RUNWAY_WEBHOOK_ALLOW_PRIVATE", "false")
    start_deliverer()

    assert api.post(f"/webhooks/{created['id']}/test", headers=auth).status_code == 202
    delivery = wait_for_delivery(
        api, auth, created["id"], lambda d: d["attempts"] >= 1 and d["last_error"], "a refusal"
    )

    assert delivery["last_error"].startswith("refused"), delivery
    assert delivery["status"] == "pending" and delivery["last_status_code"] is None
    assert receiver.received == []


# --- every event, signed ---------------------------------------------------------------------


def test_run_completed_is_delivered_signed_with_the_run_as_the_api_shows_it(
    api: TestClient,
    auth: Headers,
    workspace_id: UUID,
    make_stream: Callable[..., Json],
    worker: Any,
    listen: Listen,
) -> None:
    receiver, created = listen(["run.completed"])
    run = api.post("/runs", json={"stream_id": make_stream()["id"]}, headers=auth).json()
    wait_for_status(run["id"], "completed")

    event = wait_for_event(receiver, created["secret"], "run.completed")

    assert event["workspace_id"] == str(workspace_id)
    assert event["data"]["run"] == api.get(f"/runs/{run['id']}", headers=auth).json()
    assert [row.event_id for row in outbox()] == [UUID(event["id"])]


def test_an_events_run_equals_the_api_json_even_at_a_whole_second(
    api: TestClient, auth: Headers, make_stream: Callable[..., Json], receivers: Receivers
) -> None:
    create_webhook(api, auth, receivers.start().url, ["run.cancelled"])
    slot = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)  # as a cron schedule's slots are
    run_id = unpublished_run(UUID(make_stream()["id"]), run_type="scheduled", scheduled_for=slot)

    assert api.delete(f"/runs/{run_id}", headers=auth).status_code == 200

    [written] = outbox(type="run.cancelled")
    assert written.payload["run"] == api.get(f"/runs/{run_id}", headers=auth).json()


def test_run_failed_is_delivered(
    api: TestClient,
    auth: Headers,
    make_stream: Callable[..., Json],
    worker: Any,
    listen: Listen,
) -> None:
    receiver, created = listen(["run.failed"])
    run = api.post("/runs", json={"stream_id": make_stream("builtin.fail")["id"]}, headers=auth)
    wait_for_status(run.json()["id"], "failed")

    event = wait_for_event(receiver, created["secret"], "run.failed")

    assert event["data"]["run"]["id"] == run.json()["id"]
    assert event["data"]["run"]["status"] == "failed"
    assert event["data"]["run"] == api.get(f"/runs/{run.json()['id']}", headers=auth).json()


def test_run_cancelled_is_delivered_when_a_pending_run_is_cancelled(
    api: TestClient,
    auth: Headers,
    make_stream: Callable[..., Json],
    listen: Listen,
) -> None:
    receiver, created = listen(["run.cancelled"])
    run_id = unpublished_run(UUID(make_stream()["id"]))  # pending, never sent to a worker

    assert api.delete(f"/runs/{run_id}", headers=auth).status_code == 200
    event = wait_for_event(receiver, created["secret"], "run.cancelled")

    assert event["data"]["run"] == api.get(f"/runs/{run_id}", headers=auth).json()
    assert event["data"]["run"]["status"] == "cancelled"


def test_run_late_is_delivered_once_for_a_scheduled_run_left_pending(
    api: TestClient,
    auth: Headers,
    isolated_queues: str,
    make_stream: Callable[..., Json],
    listen: Listen,
) -> None:
    receiver, created = listen(["run.late"])
    stream = make_stream(schedule_config={"interval_seconds": 1, "late_after_seconds": 1})
    tick_until(lambda: len(runs_of(stream["id"])) == 1, "the scheduled run")
    run_id = str(runs_of(stream["id"])[0].id)

    assert wait_for(housekeeping.mark_late, 10, "the run to be found late") == 1
    event = wait_for_event(receiver, created["secret"], "run.late")

    assert event["data"]["run"]["id"] == run_id
    assert event["data"]["run"]["status"] == "pending"
    assert event["data"]["stream"]["id"] == stream["id"]
    assert housekeeping.mark_late() == 0
    assert len(outbox(type="run.late")) == 1


def test_stream_paused_is_delivered_with_the_reason(
    api: TestClient,
    auth: Headers,
    make_stream: Callable[..., Json],
    worker: Any,
    listen: Listen,
) -> None:
    receiver, created = listen(["stream.paused"])
    stream = make_stream(
        "builtin.fail", schedule_config={"interval_seconds": 1, "pause_after_failures": 1}
    )
    tick_until(lambda: len(runs_of(stream["id"])) == 1, "the scheduled run")
    wait_for_status(runs_of(stream["id"])[0].id, "failed")

    event = wait_for_event(receiver, created["secret"], "stream.paused")

    assert event["data"]["stream"]["id"] == stream["id"]
    assert event["data"]["reason"]
    assert event["data"]["reason"] == event["data"]["stream"]["paused_reason"]
    assert api.get(f"/streams/{stream['id']}", headers=auth).json()["paused_reason"]


def test_stream_recovered_is_delivered_once_when_a_scheduled_run_completes_after_a_failure(
    api: TestClient,
    auth: Headers,
    make_stream: Callable[..., Json],
    worker: Any,
    listen: Listen,
) -> None:
    receiver, created = listen(["stream.recovered"])
    stream = make_stream("builtin.fail", schedule_config={"interval_seconds": 1})
    tick_until(lambda: len(runs_of(stream["id"])) == 1, "the first scheduled run")
    wait_for_status(runs_of(stream["id"])[0].id, "failed")
    patched = api.patch(f"/streams/{stream['id']}", json={"pipeline": "builtin.noop"}, headers=auth)
    assert patched.status_code == 200, patched.text
    tick_until(lambda: len(runs_of(stream["id"])) == 2, "the second scheduled run")
    recovering = runs_of(stream["id"])[1].id
    wait_for_status(recovering, "completed")

    event = wait_for_event(receiver, created["secret"], "stream.recovered")
    assert event["data"]["stream"]["id"] == stream["id"]
    assert event["data"]["run"]["id"] == str(recovering)
    # A further success after a success recovers nothing.
    tick_until(lambda: len(runs_of(stream["id"])) == 3, "the third scheduled run")
    wait_for_status(runs_of(stream["id"])[2].id, "completed")
    assert len(outbox(type="stream.recovered")) == 1


def test_schedule_missed_is_delivered_with_the_missed_tick(
    api: TestClient,
    auth: Headers,
    make_stream: Callable[..., Json],
    listen: Listen,
) -> None:
    receiver, created = listen(["schedule.missed"])
    stream = make_stream(schedule_config={"interval_seconds": 3600, "misfire": "skip"})
    set_stream(stream["id"], next_scheduled_run=sa.func.now() - timedelta(minutes=10))

    assert ticker.tick().streams == 1
    event = wait_for_event(receiver, created["secret"], "schedule.missed")

    [tick] = ticks_of(stream["id"])
    assert tick.outcome == "missed"
    assert event["data"]["stream"]["id"] == stream["id"]
    assert event["data"]["tick"]["outcome"] == "missed"
    missed_at = datetime.fromisoformat(event["data"]["tick"]["scheduled_for"])
    assert missed_at == tick.scheduled_for
    assert runs_of(stream["id"]) == []


def test_ping_is_accepted_and_its_event_id_arrives(
    api: TestClient,
    auth: Headers,
    listen: Listen,
) -> None:
    receiver, created = listen(["run.failed"])

    response = api.post(f"/webhooks/{created['id']}/test", headers=auth)

    assert response.status_code == 202, response.text
    event = wait_for_event(receiver, created["secret"], "ping")
    assert event["id"] == response.json()["event_id"]
    assert event["data"]["webhook"]["id"] == created["id"]


# --- delivery: retries and giving up ---------------------------------------------------------


def test_a_failing_endpoint_gets_the_same_event_again_until_it_answers_2xx(
    api: TestClient,
    auth: Headers,
    receivers: Receivers,
    start_deliverer: Callable[[], Deliverer],
) -> None:
    receiver = receivers.start(responses=[500, 500, 200])
    created = create_webhook(api, auth, receiver.url, ["run.failed"])
    start_deliverer()

    event_id = api.post(f"/webhooks/{created['id']}/test", headers=auth).json()["event_id"]
    receiver.wait_for(lambda got: len(got) == 3, DELIVERY_DEADLINE)
    delivery = wait_for_delivery(
        api, auth, created["id"], lambda d: d["status"] != "pending", "the delivery to end"
    )

    assert {event["id"] for event in verified(receiver, created["secret"])} == {event_id}
    assert delivery["event_id"] == event_id
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 3
    assert delivery["last_status_code"] == 200
    assert delivery["delivered_at"] is not None
    assert delivery["next_attempt_at"] is None


def _claimed_and_abandoned(count: int = 1) -> list[store.Delivery]:
    """What beats killed mid-send leave: their claims committed (attempts counted, deliveries
    and webhooks leased), no outcome. The leases are then made to have run out, as they will."""
    with db.unit_of_work() as conn:
        room = store.Room(total=count, per_workspace=count, crowded={})
        claimed = store.claim_due(conn, [], room, LEASE_SECONDS, 12)
        conn.execute(sa.text("UPDATE webhook_deliveries SET next_attempt_at = now()"))
        conn.execute(sa.text("UPDATE webhooks SET sending_until = now()"))
    assert len(claimed) == count
    return claimed


def test_a_delivery_a_dead_beat_claimed_is_sent_again_with_its_event_id(
    api: TestClient,
    auth: Headers,
    receivers: Receivers,
    start_deliverer: Callable[[], Deliverer],
) -> None:
    receiver = receivers.start()
    created = create_webhook(api, auth, receiver.url, ["run.failed"])
    event_id = api.post(f"/webhooks/{created['id']}/test", headers=auth).json()["event_id"]
    [abandoned] = _claimed_and_abandoned()
    assert str(abandoned.event_id) == event_id

    start_deliverer()
    receiver.wait_for(lambda got: len(got) == 1, DELIVERY_DEADLINE)
    delivery = wait_for_delivery(
        api, auth, created["id"], lambda d: d["status"] == "delivered", "the delivery"
    )
    assert [event["id"] for event in verified(receiver, created["secret"])] == [event_id]
    assert delivery["attempts"] == 2  # the dead beat's attempt counts


def test_an_abandoned_delivery_out_of_attempts_ends_failed_and_is_counted(
    api: TestClient,
    auth: Headers,
    receivers: Receivers,
    setting: Callable[[str, str], None],
) -> None:
    """Several at once, of one workspace: their tallies go in one statement."""
    hooks = [create_webhook(api, auth, receivers.start().url, ["run.failed"]) for _ in range(4)]
    for hook in hooks:
        api.post(f"/webhooks/{hook['id']}/test", headers=auth)
    _claimed_and_abandoned(len(hooks))
    with db.unit_of_work() as conn:
        room = store.Room(total=16, per_workspace=16, crowded={})
        assert store.claim_due(conn, [], room, LEASE_SECONDS, max_attempts=1) == []
    for hook in hooks:
        [ended] = deliveries(api, auth, hook["id"])
        assert (ended["status"], ended["attempts"]) == ("failed", 1)
        assert ended["last_error"] == "no outcome recorded for its attempts"
    scraped = _scrape(api, auth)
    assert scraped[("runway_webhook_deliveries_total", "failed")] == 4


def test_one_endpoint_gets_one_attempt_at_a_time_whatever_the_beats(
    api: TestClient,
    auth: Headers,
    receivers: Receivers,
    start_deliverer: Callable[[], Deliverer],
) -> None:
    receiver = receivers.start(delay=1.0)
    created = create_webhook(api, auth, receiver.url, ["run.failed"])
    for _ in range(4):
        api.post(f"/webhooks/{created['id']}/test", headers=auth)
    start_deliverer()
    start_deliverer()  # two beats

    got = receiver.wait_for(lambda got: len(got) == 4, DELIVERY_DEADLINE)
    starts = sorted(request.at for request in got)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) > 0.9, f"attempts overlapped: {gaps}"


def test_a_delivery_fails_for_good_after_max_attempts(
    api: TestClient,
    auth: Headers,
    receivers: Receivers,
    setting: Callable[[str, str], None],
    start_deliverer: Callable[[], Deliverer],
) -> None:
    setting("RUNWAY_WEBHOOK_MAX_ATTEMPTS", "2")
    receiver = receivers.start(responses=[500] * 10)
    created = create_webhook(api, auth, receiver.url, ["run.failed"])
    start_deliverer()

    api.post(f"/webhooks/{created['id']}/test", headers=auth)
    delivery = wait_for_delivery(
        api, auth, created["id"], lambda d: d["status"] != "pending", "the delivery to end"
    )

    assert delivery["status"] == "failed"
    assert delivery["attempts"] == 2
    assert delivery["last_status_code"] == 500
    assert "HTTP 500" in delivery["last_error"]
    assert delivery["next_attempt_at"] is None
    assert delivery["delivered_at"] is None
    assert len(receiver.received) == 2


# --- which events, and only committed ones ---------------------------------------------------


def test_only_subscribed_events_are_sent_and_one_event_has_one_id_for_every_webhook(
    api: TestClient,
    auth: Headers,
    make_stream: Callable[..., Json],
    receivers: Receivers,
    worker: Any,
    start_deliverer: Callable[[], Deliverer],
) -> None:
    failures, first, second = receivers.start(), receivers.start(), receivers.start()
    on_failure = create_webhook(api, auth, failures.url, ["run.failed"])
    one = create_webhook(api, auth, first.url, ["run.completed"])
    two = create_webhook(api, auth, second.url, ["run.completed", "run.cancelled"])
    start_deliverer()
    completed = api.post("/runs", json={"stream_id": make_stream()["id"]}, headers=auth).json()
    wait_for_status(completed["id"], "completed")

    got_one = wait_for_event(first, one["secret"], "run.completed")
    got_two = wait_for_event(second, two["secret"], "run.completed")
    assert got_one["id"] == got_two["id"]
    assert got_one["data"]["run"]["id"] == completed["id"]
    assert outbox(webhook_id=UUID(on_failure["id"])) == []

    failing = api.post("/runs", json={"stream_id": make_stream("builtin.fail")["id"]}, headers=auth)
    wait_for_status(failing.json()["id"], "failed")
    wait_for_event(failures, on_failure["secret"], "run.failed")
    assert [event["type"] for event in verified(failures, on_failure["secret"])] == ["run.failed"]
    assert [event["type"] for event in verified(first, one["secret"])] == ["run.completed"]


class _RolledBack(Exception):
    pass


def test_a_run_end_that_rolls_back_writes_no_event(
    api: TestClient,
    auth: Headers,
    make_stream: Callable[..., Json],
    receivers: Receivers,
) -> None:
    create_webhook(api, auth, receivers.start().url, ["run.completed"])
    run_id = unpublished_run(UUID(make_stream()["id"]))
    finish = (
        sa.update(pipeline_executions)
        .where(pipeline_executions.c.id == run_id)
        .values(status="completed", completed_at=sa.func.now())
    )

    with pytest.raises(_RolledBack), db.unit_of_work() as conn:
        conn.execute(finish)
        written = conn.execute(sa.text("SELECT count(*) FROM webhook_deliveries")).scalar_one()
        assert written == 1  # the trigger wrote it, in this transaction
        raise _RolledBack

    assert outbox() == []
    with db.unit_of_work() as conn:  # the same change, committed, does write it
        conn.execute(finish)
    assert [row.type for row in outbox()] == ["run.completed"]


# --- operations: metrics, retention, logs ----------------------------------------------------


def _scrape(api: TestClient, auth: Headers) -> dict[tuple[str, str], float]:
    response = api.get("/metrics", headers=auth)
    assert response.status_code == 200, response.text
    return {
        (sample.name, sample.labels.get("status", "")): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name.startswith("runway_webhook_")
    }


def test_metrics_count_this_workspaces_deliveries_by_status_and_the_oldest_pending(
    api: TestClient,
    auth: Headers,
    receivers: Receivers,
    setting: Callable[[str, str], None],
    start_deliverer: Callable[[], Deliverer],
) -> None:
    setting("RUNWAY_WEBHOOK_MAX_ATTEMPTS", "1")
    working = create_webhook(api, auth, receivers.start().url, ["run.failed"])
    broken = create_webhook(api, auth, receivers.start(responses=[500]).url, ["run.failed"])
    down = receivers.start()
    down.stop()
    unreachable = create_webhook(api, auth, down.url, ["run.failed"])
    other = other_workspace_auth()
    elsewhere = create_webhook(api, other, receivers.start().url, ["run.failed"])
    empty = _scrape(api, auth)
    assert empty[("runway_webhook_oldest_pending_seconds", "")] == 0
    assert empty[("runway_webhook_deliveries_pending", "")] == 0
    for status in ("delivered", "failed"):
        assert empty[("runway_webhook_deliveries_total", status)] == 0

    deliverer = start_deliverer()
    for webhook in (working, broken):
        api.post(f"/webhooks/{webhook['id']}/test", headers=auth)
    for webhook in (working, broken):
        wait_for_delivery(api, auth, webhook["id"], lambda d: d["status"] != "pending", "an end")
    deliverer.stop()
    for _ in range(2):
        api.post(f"/webhooks/{unreachable['id']}/test", headers=auth)
    api.post(f"/webhooks/{elsewhere['id']}/test", headers=other)

    scraped = _scrape(api, auth)
    assert scraped[("runway_webhook_deliveries_total", "delivered")] == 1
    assert scraped[("runway_webhook_deliveries_total", "failed")] == 1
    assert scraped[("runway_webhook_deliveries_pending", "")] == 2
    assert scraped[("runway_webhook_oldest_pending_seconds", "")] > 0


def test_retention_deletes_deliveries_older_than_the_retention_days(
    api: TestClient, auth: Headers, receivers: Receivers
) -> None:
    created = create_webhook(api, auth, receivers.start().url, ["run.failed"])
    pings = [
        api.post(f"/webhooks/{created['id']}/test", headers=auth).json()["event_id"]
        for _ in range(3)
    ]
    with db.unit_of_work() as conn:
        for event_id, age in zip(pings, ("31 days", "29 days"), strict=False):
            conn.execute(
                sa.text(
                    "UPDATE webhook_deliveries SET created_at = now() - CAST(:age AS interval)"
                    " WHERE event_id = :event_id"
                ),
                {"age": age, "event_id": event_id},
            )

    report = retention.purge()

    assert {p.table: p.deleted for p in report.purged}["webhook_deliveries"] == 1
    assert {str(row.event_id) for row in outbox()} == set(pings[1:])


def test_neither_the_secret_nor_the_urls_token_is_ever_logged(
    api: TestClient,
    auth: Headers,
    receivers: Receivers,
    setting: Callable[[str, str], None],
    start_deliverer: Callable[[], Deliverer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    setting("RUNWAY_WEBHOOK_MAX_ATTEMPTS", "2")
    token = "SECRET-TOKEN-123"
    failing = receivers.start(responses=[500] * 10)
    down = receivers.start()
    down.stop()
    hooks = [
        create_webhook(api, auth, f"http://127.0.0.1:{r.port}/hook/{token}", ["run.failed"])
        for r in (failing, down)
    ]
    caplog.set_level(logging.DEBUG)
    start_deliverer()

    for hook in hooks:
        api.post(f"/webhooks/{hook['id']}/test", headers=auth)
    for hook in hooks:
        wait_for_delivery(api, auth, hook["id"], lambda d: d["status"] == "failed", "failure")

    assert {item.path for item in failing.received} == {f"/hook/{token}"}
    assert any("failed for good" in record.getMessage() for record in caplog.records)
    secrets = [hook["secret"] for hook in hooks]
    for record in caplog.records:
        text = " ".join(
            [record.getMessage(), str(record.args), record.exc_text or "", str(record.__dict__)]
        )
        for secret in [token, *secrets]:
            assert secret not in text, f"{secret!r} logged by {record.name}: {text}"


def test_deliveries_are_newest_first_and_limit_is_bounded(
    api: TestClient, auth: Headers, receivers: Receivers
) -> None:
    created = create_webhook(api, auth, receivers.start().url, ["run.failed"])
    first = api.post(f"/webhooks/{created['id']}/test", headers=auth).json()["event_id"]
    second = api.post(f"/webhooks/{created['id']}/test", headers=auth).json()["event_id"]

    newest = deliveries(api, auth, created["id"], 1)
    assert [item["event_id"] for item in newest] == [second]
    assert [item["event_id"] for item in deliveries(api, auth, created["id"])] == [second, first]
    for limit in (0, 501):
        response = api.get(f"/webhooks/{created['id']}/deliveries?limit={limit}", headers=auth)
        assert response.status_code == 422, response.text
        assert [error["loc"] for error in response.json()["detail"]] == [["query", "limit"]]
