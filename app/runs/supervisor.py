"""Per worker process: heartbeats, cancel notices and time limits for the runs it executes.

One thread per process. Every RUNWAY_HEARTBEAT_SECONDS it renews the leases of all the
process's runs with one UPDATE, which also brings back cancel requests: the run's cancel
event is set, so `ctx.cancelled` turns true. A run whose row no longer answers (its lease
was taken over, or it ended) is told to stop the same way.

Deadlines, checked between heartbeats:
- soft time limit: the task is interrupted with SoftTimeLimitExceeded (ends as `timeout`);
- cancel grace (RUNWAY_CANCEL_GRACE_SECONDS after the cancel was requested) and hard time
  limit: the run's final state is written for it and its process is terminated. Celery's
  prefork pool replaces the process; the redelivered message finds the row ended.
Interrupting and terminating need a prefork child (`allow_termination()`); elsewhere
(threads pool) runs can only be cancelled cooperatively.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from uuid import UUID

import psycopg

from app import db
from app.runs import store

log = logging.getLogger(__name__)

# How the run must end when its process is terminated: "cancelled" or "timeout".
Terminate = Callable[[str], None]


@dataclass
class Limits:
    soft_seconds: float | None
    hard_seconds: float | None


@dataclass
class _Tracked:
    attempt: int
    cancel_event: threading.Event
    terminate: Terminate
    soft_deadline: float | None
    hard_deadline: float | None
    cancel_deadline: float | None = None
    interrupted: bool = False
    ending: bool = False


class Supervisor:
    def __init__(self, heartbeat_seconds: float, cancel_grace_seconds: float) -> None:
        self.heartbeat_seconds = heartbeat_seconds
        self.cancel_grace_seconds = cancel_grace_seconds
        self.can_terminate = False
        self._runs: dict[UUID, _Tracked] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def allow_termination(self) -> None:
        """This process is a prefork child: it may interrupt and end itself."""
        self.can_terminate = True

    @contextmanager
    def track(
        self,
        run_id: UUID,
        attempt: int,
        cancel_event: threading.Event,
        limits: Limits,
        terminate: Terminate,
    ) -> Iterator[None]:
        now = time.monotonic()
        tracked = _Tracked(
            attempt,
            cancel_event,
            terminate,
            None if limits.soft_seconds is None else now + limits.soft_seconds,
            None if limits.hard_seconds is None else now + limits.hard_seconds,
        )
        with self._lock:
            self._runs[run_id] = tracked
            self._ensure_thread()
        try:
            yield
        finally:
            with self._lock:
                self._runs.pop(run_id, None)

    def beat(self) -> None:
        """Renew every tracked run's lease in one statement; act on what comes back."""
        with self._lock:
            beats = {run_id: tracked.attempt for run_id, tracked in self._runs.items()}
        if not beats:
            return
        try:
            with db.hot_connection() as conn:
                answers = store.heartbeat(conn, beats)
        except psycopg.Error as error:
            log.warning("heartbeat failed, will try again: %s", error)
            return
        for run_id in beats:
            self.notice(run_id, run_id in answers, answers.get(run_id))

    def notice(self, run_id: UUID, owned: bool, cancel_age: float | None) -> None:
        """Act on what a write for the run learned (heartbeat or progress report): a run
        that lost its row must stop; a cancelled one must stop and its grace starts."""
        if not owned:
            self._stop(run_id, "its lease was lost", None)
        elif cancel_age is not None:
            self._stop(run_id, "cancel requested", cancel_age)

    def check_deadlines(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [(run_id, tracked) for run_id, tracked in self._runs.items()]
        for run_id, tracked in due:
            if _passed(tracked.cancel_deadline, now):
                self._end(run_id, tracked, "cancelled")
            elif _passed(tracked.hard_deadline, now):
                self._end(run_id, tracked, "timeout")
            elif _passed(tracked.soft_deadline, now) and not tracked.interrupted:
                tracked.interrupted = True
                self._interrupt(run_id)

    def _stop(self, run_id: UUID, why: str, cancel_age: float | None) -> None:
        """Tell the run to stop (once); a cancel also starts its grace (once)."""
        with self._lock:
            tracked = self._runs.get(run_id)
        if tracked is None:
            return
        if not tracked.cancel_event.is_set():
            log.info("run %s must stop: %s", run_id, why)
            tracked.cancel_event.set()
        if cancel_age is not None and tracked.cancel_deadline is None:
            remaining = max(0.0, self.cancel_grace_seconds - cancel_age)
            tracked.cancel_deadline = time.monotonic() + remaining

    def _interrupt(self, run_id: UUID) -> None:
        if not self.can_terminate:
            log.warning("run %s is over its soft time limit; it cannot be interrupted here", run_id)
            return
        log.warning("run %s is over its soft time limit: interrupting it", run_id)
        os.kill(os.getpid(), signal.SIGUSR1)  # billiard raises SoftTimeLimitExceeded

    def _end(self, run_id: UUID, tracked: _Tracked, how: str) -> None:
        """Write the run's end for it, then kill this process, but only while the run is
        still the one in progress: `track()` leaves under the same lock, so a pipeline that
        returned meanwhile (and a next run it went on to) is never killed."""
        if tracked.ending:
            return
        tracked.ending = True
        log.warning("run %s did not stop in time: ending it as %s", run_id, how)
        tracked.terminate(how)
        with self._lock:
            if self._runs.get(run_id) is tracked and self.can_terminate:
                os.kill(os.getpid(), signal.SIGKILL)

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():  # forked: the parent's thread does not exist here
            self._pid, self._thread = os.getpid(), None
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._loop, name="runway-supervisor", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        next_beat = time.monotonic() + self.heartbeat_seconds
        while True:
            time.sleep(min(0.25, self.heartbeat_seconds))
            try:
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.heartbeat_seconds
                    self.beat()
                self.check_deadlines()
            except Exception:  # this thread must outlive any one failure
                log.exception("supervisor: unexpected error, carrying on")


def _passed(deadline: float | None, now: float) -> bool:
    return deadline is not None and now >= deadline
