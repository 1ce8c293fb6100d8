"""The supervisor's kernel timer: the lease's deadline, and the backstop past a hard limit."""

from __future__ import annotations

import threading

from app.runs.supervisor import BACKSTOP_SECONDS, Supervisor, Ticket, lease_budget


def _ticket(renewed_at: float, hard_deadline: float | None) -> Ticket:
    return Ticket(1, threading.Event(), lambda how: None, renewed_at, None, hard_deadline)


def test_the_timer_ends_a_run_whose_lease_was_not_renewed() -> None:
    supervisor = Supervisor(heartbeat_seconds=10, cancel_grace_seconds=30, lease_seconds=60)
    last = supervisor._last_moment(_ticket(renewed_at=1000.0, hard_deadline=5000.0))
    assert last == 1000.0 + lease_budget(60)


def test_the_timer_ends_a_run_that_keeps_its_lease_past_its_hard_limit() -> None:
    """The backstop Celery's per-task time limit used to be, without a timer per task."""
    supervisor = Supervisor(heartbeat_seconds=10, cancel_grace_seconds=30, lease_seconds=60)
    last = supervisor._last_moment(_ticket(renewed_at=1000.0, hard_deadline=900.0))
    assert last == 900.0 + 30 + BACKSTOP_SECONDS < 1000.0 + lease_budget(60)


def test_a_run_without_a_hard_limit_has_only_its_lease() -> None:
    supervisor = Supervisor(heartbeat_seconds=10, cancel_grace_seconds=30, lease_seconds=60)
    assert supervisor._last_moment(_ticket(1000.0, None)) == 1000.0 + lease_budget(60)
