"""The local webhook receivers other tests deliver to: statuses, stop and restart, delays."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import httpx
import pytest

from tests.fixtures.receivers import Receiver, Receivers


def _post(url: str, body: object, timeout: float = 5.0) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=timeout) as client:
        return client.post(url, content=json.dumps(body).encode(), headers={"X-Test": "yes"})


def test_records_each_post_and_answers_the_statuses_in_order(
    receivers: Receivers,
) -> None:
    receiver = receivers.start(responses=[500, 410])
    statuses = [_post(receiver.url, {"n": n}).status_code for n in range(3)]
    assert statuses == [500, 410, 200]
    assert receiver.events() == [{"n": 0}, {"n": 1}, {"n": 2}]
    first = receiver.received[0]
    assert first.path == "/hook"
    assert first.headers["x-test"] == "yes"
    assert first.body == b'{"n": 0}'
    assert first.at <= receiver.received[1].at


def test_stop_refuses_connections_and_start_again_listens_on_the_same_port(
    receivers: Receivers,
) -> None:
    receiver = receivers.start()
    url = receiver.url
    receiver.stop()
    with pytest.raises(httpx.ConnectError):
        _post(url, {"n": 1})
    receiver.start_again()
    assert receiver.url == url
    assert _post(url, {"n": 2}).status_code == 200
    assert receiver.events() == [{"n": 2}]


def test_a_delay_holds_one_answer_without_holding_the_others(
    receivers: Receivers,
) -> None:
    receiver = receivers.start()
    receiver.delay = 30
    slow = threading.Thread(target=_post_ignoring_errors, args=(receiver.url,), daemon=True)
    slow.start()
    receiver.wait_for(lambda got: len(got) == 1, timeout=5)
    receiver.delay = 0
    started = time.monotonic()
    assert _post(receiver.url, {"n": 2}).status_code == 200
    assert time.monotonic() - started < 2
    assert slow.is_alive()  # still waiting for its answer
    receiver.stop()
    slow.join(5)
    assert not slow.is_alive()  # stopping ended the delay


def _post_ignoring_errors(url: str) -> None:
    with contextlib.suppress(httpx.HTTPError):  # cut off when the receiver stops
        _post(url, {"n": 1}, timeout=60)


def test_a_delayed_answer_comes_after_the_delay(receivers: Receivers) -> None:
    receiver = receivers.start(responses=[202], delay=0.3)
    started = time.monotonic()
    assert _post(receiver.url, {}).status_code == 202
    assert time.monotonic() - started >= 0.3


def test_wait_for_says_what_arrived_when_it_times_out() -> None:
    receiver = Receiver()
    try:
        _post(receiver.url, {"n": 1})
        with pytest.raises(AssertionError, match=r'still waiting after 0\.2 s.*\{"n": 1\}'):
            receiver.wait_for(lambda got: len(got) >= 2, timeout=0.2)
        assert len(receiver.wait_for(lambda got: len(got) == 1, timeout=1)) == 1
    finally:
        receiver.stop()
