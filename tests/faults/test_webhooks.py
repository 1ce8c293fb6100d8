"""Webhooks under faults (SPEC: Webhooks; guarantee 12): every event reaches every matching
endpoint at least once, through killed workers, a frozen leading beat, an endpoint that is
down or slow, and runs held back long enough to be late. (A beat that dies mid-send is
tests/integration/test_webhooks.py's, and an answer that trickles in tests/unit's.)

Each scenario runs real subprocesses: a beat, which delivers (app/webhooks/deliverer.py) and
sweeps, and, where runs must execute, a worker; with the test timings (heartbeat 1 s, lease
5 s, sweep 2 s, webhook retry base 1 s). Endpoints are local HTTP receivers
(tests/fixtures/receivers.py) subscribed through
the API; what they receive is checked against the webhook's secret
(`app.webhooks.signing.verify`), and the outbox is read back through
GET /webhooks/{id}/deliveries. Each test prints what it measured (run with -s).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from app.settings import get_settings
from app.webhooks import sending
from app.webhooks.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, verify
from tests.faults.helpers import LEASE_AND_SWEEP, SWEEP, Scenario, row, running_on
from tests.fixtures.queries import runs_of
from tests.fixtures.receivers import Received, Receiver, Receivers
from tests.fixtures.services import wait_for, wait_for_status

pytestmark = pytest.mark.slow

# How late a delivery may be after its event, with both processes healthy: the deliverer
# polls every POLL_SECONDS; the rest is a claim, a POST and a write.
PROMPT = 3.0
# The longest one endpoint backs off (RetryPolicy doubling from 1 s, jittered) after failing
# for the 20 s of the outage below: at most 32 s, once the 6th failure in a row is recorded.
OUTAGE = 20.0
BACKOFF_AFTER_OUTAGE = 32.0


@dataclass(frozen=True)
class Hook:
    id: str
    secret: str


def subscribe(api: TestClient, auth: dict[str, str], receiver: Receiver, *events: str) -> Hook:
    response = api.post(
        "/webhooks", json={"url": receiver.url, "events": list(events)}, headers=auth
    )
    assert response.status_code == 201, response.text
    created = response.json()
    return Hook(created["id"], created["secret"])


def deliveries(api: TestClient, auth: dict[str, str], hook: Hook) -> list[dict[str, Any]]:
    response = api.get(f"/webhooks/{hook.id}/deliveries", params={"limit": 500}, headers=auth)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["items"]
    return found


def all_delivered(api: TestClient, auth: dict[str, str], hook: Hook) -> list[dict[str, Any]]:
    """The hook's deliveries once every one is delivered; none before."""
    found = deliveries(api, auth, hook)
    return found if all(d["status"] == "delivered" for d in found) else []


def event(received: Received) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(received.body)
    return parsed


def signed(received: Received, hook: Hook) -> bool:
    """Signed with the hook's secret, and the header's event id is the body's."""
    header = received.headers.get(SIGNATURE_HEADER.lower(), "")
    same_id = received.headers.get(EVENT_ID_HEADER.lower()) == event(received)["id"]
    return same_id and verify(hook.secret, received.body, header)


def of_run(got: list[Received], kind: str, run_id: UUID) -> list[Received]:
    """What was received about the run, of one event type."""
    return [
        item
        for item in got
        if event(item)["type"] == kind and event(item)["data"]["run"]["id"] == str(run_id)
    ]


def arrival(receiver: Receiver, kind: str, run_id: UUID, timeout: float) -> Received:
    """The one event of `kind` about the run, once it has arrived."""
    got = receiver.wait_for(lambda got: bool(of_run(got, kind, run_id)), timeout)
    [arrived] = of_run(got, kind, run_id)
    return arrived


def wall(received: Received) -> float:
    """When it arrived, as unix time (the receivers stamp with time.monotonic())."""
    return received.at + (time.time() - time.monotonic())


@contextlib.contextmanager
def max_attempts(number: int) -> Iterator[None]:
    """Runs created inside get `number` attempts (RUNWAY_MAX_ATTEMPTS, read at creation)."""
    previous = os.environ.get("RUNWAY_MAX_ATTEMPTS")
    os.environ["RUNWAY_MAX_ATTEMPTS"] = str(number)
    get_settings.cache_clear()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("RUNWAY_MAX_ATTEMPTS", None)
        else:
            os.environ["RUNWAY_MAX_ATTEMPTS"] = previous
        get_settings.cache_clear()


# 1. Workers killed around a run's final write.


def test_worker_killed_right_after_the_final_write_still_gets_run_completed_delivered(
    scenario: Scenario, api: TestClient, auth: dict[str, str], receivers: Receivers
) -> None:
    receiver = receivers.start()
    hook = subscribe(api, auth, receiver, "run.completed", "run.failed")
    worker = scenario.worker(1)
    [run_id] = scenario.runs("builtin.sleep", seconds=1)
    done = wait_for_status(run_id, "completed", timeout=20)
    worker.kill()  # the final write is committed; whatever the worker does after it is not
    killed_after = time.time() - done.completed_at.timestamp()

    scenario.spawn("beat")  # no beat before the kill: the event can only come from the outbox
    arrived = arrival(receiver, "run.completed", run_id, 30)
    latency = wall(arrived) - done.completed_at.timestamp()
    print(
        f"\nworker SIGKILLed {killed_after:.2f}s after the final write;"
        f" run.completed delivered {latency:.1f}s after completion (beat started after the kill)"
    )
    assert signed(arrived, hook)
    body = event(arrived)
    assert body["data"]["run"]["status"] == "completed"
    assert body["workspace_id"] == str(scenario.workspace_id)
    assert [event(item)["type"] for item in receiver.received] == ["run.completed"]
    wait_for(
        lambda: [d["status"] for d in deliveries(api, auth, hook)] == ["delivered"],
        10,
        "the delivery to be recorded delivered",
    )


def test_worker_killed_mid_run_on_its_last_attempt_gets_run_failed_delivered(
    scenario: Scenario, api: TestClient, auth: dict[str, str], receivers: Receivers
) -> None:
    receiver = receivers.start()
    hook = subscribe(api, auth, receiver, "run.completed", "run.failed")
    scenario.spawn("beat")
    worker = scenario.worker(1)
    with max_attempts(1):
        [run_id] = scenario.runs("builtin.sleep", seconds=60)
    wait_for(lambda: running_on(run_id, worker), 20, "the run to start")

    killed = time.time()
    worker.kill()
    failed = wait_for_status(run_id, "failed", timeout=LEASE_AND_SWEEP + 10)
    arrived = arrival(receiver, "run.failed", run_id, 15)
    ended = failed.completed_at.timestamp()
    print(
        f"\nworker SIGKILLed mid-run: rescued as failed {ended - killed:.1f}s later;"
        f" run.failed delivered {wall(arrived) - ended:.1f}s after that"
    )
    assert signed(arrived, hook)
    run = event(arrived)["data"]["run"]
    assert (run["status"], run["attempt"], run["max_attempts"]) == ("failed", 1, 1)
    assert run["error_type"] == "lease_expired"


# 2. A standby beat delivers.


def test_standby_beat_delivers_while_the_leader_is_frozen(
    scenario: Scenario, api: TestClient, auth: dict[str, str], receivers: Receivers
) -> None:
    receiver = receivers.start()
    hook = subscribe(api, auth, receiver, "run.completed")
    leader = scenario.spawn("beat")
    wait_for(lambda: "beat: leading" in leader.log(), 30, "the first beat to lead")
    standby = scenario.spawn("beat")
    wait_for(lambda: "beat: Starting" in standby.log(), 30, "the second beat to start")
    scenario.worker(1)
    leader.signal(signal.SIGSTOP, group=True)  # it keeps the lock until it times out
    try:
        [run_id] = scenario.runs("builtin.noop")
        done = wait_for_status(run_id, "completed", timeout=20)
        arrived = arrival(receiver, "run.completed", run_id, PROMPT + 5)
    finally:
        leader.signal(signal.SIGCONT, group=True)
    print(f"\nstandby beat delivered {wall(arrived) - done.completed_at.timestamp():.1f}s after")
    assert signed(arrived, hook)


# 3. An endpoint that is down, then back.


def test_receiver_down_for_20_seconds_gets_every_event_once_it_is_back(
    scenario: Scenario, api: TestClient, auth: dict[str, str], receivers: Receivers
) -> None:
    receiver = receivers.start()
    hook = subscribe(api, auth, receiver, "run.completed")
    receiver.stop()
    down = time.monotonic()
    scenario.spawn("beat")
    scenario.worker(2)
    run_ids = scenario.runs("builtin.noop", 4)
    for run_id in run_ids:
        wait_for_status(run_id, "completed", timeout=20)
    wait_for(
        lambda: any(d["last_error"] for d in deliveries(api, auth, hook)),
        OUTAGE,
        "an attempt to fail while the receiver is down",
    )
    time.sleep(max(0.0, down + OUTAGE - time.monotonic()))  # the outage under test

    receiver.start_again()
    back = time.monotonic()
    tried = sum(d["attempts"] for d in deliveries(api, auth, hook))
    got = receiver.wait_for(
        lambda got: all(of_run(got, "run.completed", run_id) for run_id in run_ids),
        BACKOFF_AFTER_OUTAGE + 10,
    )
    print(
        f"\nreceiver down {back - down:.1f}s ({tried} attempts failed meanwhile):"
        f" every event received {got[-1].at - back:.1f}s after it came back"
    )
    assert all(signed(item, hook) for item in got)
    outbox = wait_for(
        lambda: all_delivered(api, auth, hook), 10, "every delivery to be recorded delivered"
    )
    assert sorted(d["event_id"] for d in outbox) == sorted({event(item)["id"] for item in got})
    assert len(outbox) == len(run_ids)


# 4. A slow endpoint next to a fast one.


def test_slow_endpoint_does_not_delay_deliveries_to_another(
    scenario: Scenario, api: TestClient, auth: dict[str, str], receivers: Receivers
) -> None:
    slow = receivers.start(delay=30)  # every attempt to it times out (sending.TIMEOUT_SECONDS)
    fast = receivers.start()
    slow_hook = subscribe(api, auth, slow, "run.completed")
    fast_hook = subscribe(api, auth, fast, "run.completed")
    scenario.spawn("beat")
    scenario.worker(2)
    stream = UUID(scenario.make_stream("builtin.noop")["id"])

    latencies: list[float] = []
    deadline = time.monotonic() + 2 * sending.TIMEOUT_SECONDS + 15
    # Events keep coming until the slow endpoint's first attempt has timed out and its next
    # one is under way: each must reach the fast endpoint promptly all along.
    while len(slow.received) < 2:
        assert time.monotonic() < deadline, f"the slow endpoint got {len(slow.received)} attempts"
        run_id = scenario.run_of(stream)
        done = wait_for_status(run_id, "completed", timeout=20)
        arrived = arrival(fast, "run.completed", run_id, 15)
        assert signed(arrived, fast_hook)
        latencies.append(wall(arrived) - done.completed_at.timestamp())

    print(
        f"\nslow endpoint (answers after 30s) stuck: {len(latencies)} events reached the fast one"
        f" in {min(latencies):.2f}..{max(latencies):.2f}s after completion"
    )
    assert max(latencies) < PROMPT, latencies
    slow_outbox = deliveries(api, auth, slow_hook)
    assert not [d for d in slow_outbox if d["status"] == "delivered"]
    timed_out = f"no answer within {sending.TIMEOUT_SECONDS:g} s"
    assert any(d["last_error"] == timed_out for d in slow_outbox), slow_outbox
    assert sum(d["attempts"] for d in slow_outbox) <= 2, "more than one attempt at a time"


# 5 and 6. Late scheduled runs.


def test_scheduled_run_that_no_worker_starts_raises_run_late_once(
    scenario: Scenario, api: TestClient, auth: dict[str, str], receivers: Receivers
) -> None:
    receiver = receivers.start()
    hook = subscribe(api, auth, receiver, "run.late")
    scenario.spawn("beat")  # and no worker
    config = {"interval_seconds": 2, "late_after_seconds": 1, "overlap": "allow"}
    stream = scenario.make_stream("builtin.noop", schedule_config=config)

    def late_runs(got: list[Received]) -> set[str]:
        return {event(item)["data"]["run"]["id"] for item in got}

    # Three runs late: the first has been through at least two sweeps since it was found.
    got = receiver.wait_for(lambda got: len(late_runs(got)) >= 3, 30)
    runs = {str(run.id): run for run in runs_of(stream["id"])}
    lateness = [
        wall(item) - runs[event(item)["data"]["run"]["id"]].scheduled_for.timestamp()
        for item in got
    ]
    print(
        f"\nrun.late (late after 1s, sweep {SWEEP:g}s) received"
        f" {min(lateness):.1f}..{max(lateness):.1f}s after the runs' slots"
    )
    ids = [event(item)["data"]["run"]["id"] for item in got]
    assert len(ids) == len(set(ids)), f"run.late twice for a run: {ids}"
    assert len({event(item)["id"] for item in got}) == len(got)
    for item in got:
        body = event(item)
        assert signed(item, hook)
        assert body["type"] == "run.late"
        assert body["data"]["run"]["status"] == "pending"
        assert body["data"]["run"]["run_type"] == "scheduled"
        assert body["data"]["run"]["waiting_for"] is None
        assert body["data"]["stream"]["id"] == stream["id"]
        assert body["data"]["late_after_seconds"] == 1
    assert max(lateness) < 1 + SWEEP + PROMPT


def test_scheduled_run_held_back_by_a_full_limit_raises_run_late(
    scenario: Scenario, api: TestClient, auth: dict[str, str], receivers: Receivers
) -> None:
    response = api.put("/limits/k", json={"max_concurrent": 1}, headers=auth)
    assert response.status_code == 200, response.text
    receiver = receivers.start()
    hook = subscribe(api, auth, receiver, "run.late")
    scenario.spawn("beat")
    worker = scenario.worker(2)
    holder_stream = scenario.make_stream("builtin.sleep", params={"seconds": 60}, limit_keys=["k"])
    holder = scenario.run_of(UUID(holder_stream["id"]))
    wait_for(lambda: running_on(holder, worker), 20, "the long run to hold the slot")

    config = {"interval_seconds": 2, "late_after_seconds": 1}
    stream = scenario.make_stream("builtin.noop", limit_keys=["k"], schedule_config=config)
    [first, *_] = receiver.wait_for(lambda got: len(got) >= 1, 20)
    body = event(first)
    slot = runs_of(stream["id"])[0].scheduled_for.timestamp()
    print(f"\nrun.late of a run waiting for a full limit: {wall(first) - slot:.1f}s after its slot")
    assert signed(first, hook)
    assert body["data"]["stream"]["id"] == stream["id"]
    run = body["data"]["run"]
    assert run["status"] == "pending"
    assert run["waiting_for"] is not None, run
    assert (run["waiting_for"]["kind"], run["waiting_for"]["key"]) == ("concurrency", "k")
    assert row(holder).status == "running"
