"""The run state machine: statuses and the transitions allowed between them."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


class RunType(StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"
    TEST = "test"


TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})

# Waiting for a worker to claim them.
CLAIMABLE = (RunStatus.PENDING, RunStatus.RETRYING)
# Not ended yet.
LIVE = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.RETRYING)

TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED}),
    RunStatus.RETRYING: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.FAILED}),
    RunStatus.RUNNING: frozenset(
        {RunStatus.COMPLETED, RunStatus.RETRYING, RunStatus.FAILED, RunStatus.CANCELLED}
    ),
    RunStatus.COMPLETED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
}


def sources_of(target: RunStatus) -> tuple[RunStatus, ...]:
    """The statuses a run may move to `target` from: the WHERE clause of every transition."""
    return tuple(source for source, targets in TRANSITIONS.items() if target in targets)
