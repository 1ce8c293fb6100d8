"""The state machine: terminal states are final, every other move is listed."""

from __future__ import annotations

from app.states import TERMINAL, TRANSITIONS, RunStatus, sources_of


def test_terminal_states_have_no_way_out() -> None:
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()
        assert status.is_terminal


def test_completed_is_reached_only_from_running() -> None:
    assert sources_of(RunStatus.COMPLETED) == (RunStatus.RUNNING,)


def test_running_is_reached_only_by_a_claim_of_a_waiting_run() -> None:
    assert set(sources_of(RunStatus.RUNNING)) == {RunStatus.PENDING, RunStatus.RETRYING}


def test_every_status_has_a_row_in_the_table() -> None:
    assert set(TRANSITIONS) == set(RunStatus)
