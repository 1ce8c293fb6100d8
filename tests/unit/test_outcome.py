"""The retry policy: backoff with jitter, the permanent-error path, the attempt cap."""

from __future__ import annotations

import pytest

from app.errors import PermanentError
from app.runs.outcome import RetryPolicy
from app.states import RunStatus

policy = RetryPolicy(base_seconds=5, max_seconds=60)


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (9, 60)]
)
def test_delay_doubles_with_jitter_and_is_capped(attempt: int, ceiling: float) -> None:
    delays = [policy.delay(attempt) for _ in range(200)]
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert len(set(delays)) > 1


def test_retryable_error_retries_while_attempts_remain() -> None:
    outcome = policy.decide(RuntimeError("feed timed out"), "RuntimeError", 1, 3)
    assert outcome.status is RunStatus.RETRYING
    assert outcome.error == "feed timed out"
    assert outcome.retry_in is not None and 2.5 <= outcome.retry_in <= 5


def test_last_attempt_fails() -> None:
    outcome = policy.decide(RuntimeError("still down"), "RuntimeError", 3, 3)
    assert (outcome.status, outcome.retry_in) == (RunStatus.FAILED, None)


def test_permanent_error_fails_at_once() -> None:
    outcome = policy.decide(PermanentError("bad query"), "PermanentError", 1, 3)
    assert outcome.status is RunStatus.FAILED
    assert outcome.error_type == "PermanentError"


def test_error_without_message_is_named_by_its_type() -> None:
    assert policy.decide(KeyError(), "KeyError", 3, 3).error == "KeyError"
