"""Per worker process: leases, cancel notices and time limits of the runs it executes.

Two threads per process, so that a stalled database call never delays a deadline:
- the heartbeat thread renews the leases of all the process's runs with one UPDATE every
  RUNWAY_HEARTBEAT_SECONDS (every quarter second after a failure). Its answer brings back
  cancel requests, and runs whose row no longer answers (taken over, or ended);
- the watchdog thread does no I/O: every tenth of a second it checks each run's deadlines.

Deadlines, on this process's own clock:
- lease: a run whose lease was last renewed `lease_budget` ago is terminated at once, before
  the lease can expire and the sweep can start another attempt (guarantee 9). The renewal
  counts from when the renewing statement was sent, which is no later than the heartbeat
  Postgres records, so no clock needs to agree with another. In a prefork child the kernel
  enforces this deadline too: an interval timer (SIGALRM, default action) re-armed at every
  renewal ends the process even if the watchdog cannot run (code holding the GIL) or the
  process was stopped (SIGSTOP, a frozen cgroup) past it; the same timer ends a run that
  keeps its lease but outlives its hard time limit by BACKSTOP_SECONDS and the grace;
- lost: a run whose row was taken over or ended elsewhere is asked to stop and its process
  terminated at once: another attempt may be running already;
- cancel grace: a run whose cancel was requested gets RUNWAY_CANCEL_GRACE_SECONDS to return;
  then its end is written for it and its process terminated;
- hard time limit: the run's end (`timeout`) is written for it, then its process terminated;
- soft time limit: the run is interrupted with SoftTimeLimitExceeded.

Terminating and interrupting need a prefork child (`allow_termination()`); elsewhere
(threads pool) runs can only be told to stop. Whoever ends an attempt first owns its final
write: the watchdog marks the run taken under the same lock that `track()` leaves under, so
a pipeline that returned meanwhile is never killed or overwritten, and the executor does not
write an attempt the supervisor ended.
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
from types import FrameType
from uuid import UUID

import psycopg
from celery.exceptions import SoftTimeLimitExceeded

from app import db
from app.runs import store

log = logging.getLogger(__name__)

# How the run must end when the supervisor ends it: "cancelled" or "timeout".
Terminate = Callable[[str], None]
Kill = Callable[[int, int], None]

WATCH_SECONDS = 0.1
HEARTBEAT_RETRY_SECONDS = 0.25
# Past a run's hard time limit, how long the watchdog has to write its end and terminate it
# before the kernel's timer does (on top of the cancel grace).
BACKSTOP_SECONDS = 60.0


def clock() -> float:
    """Seconds on a clock that keeps counting while the machine is suspended (leases expire
    in Postgres meanwhile), and never jumps."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def lease_budget(lease_seconds: float) -> float:
    """How long a run may go without a renewal before its worker stops it: the lease less a
    margin for the watchdog's period and the kill."""
    return lease_seconds - max(0.5, lease_seconds * 0.1)


@dataclass
class Limits:
    soft_seconds: float | None
    hard_seconds: float | None


@dataclass
class Ticket:
    """One attempt under supervision. `taken`: the supervisor ended it (wrote its end, or
    terminated it); the executor must not write an outcome of its own."""

    attempt: int
    cancel_event: threading.Event
    terminate: Terminate
    renewed_at: float
    soft_deadline: float | None
    hard_deadline: float | None
    stop_deadline: float | None = None
    stop_reason: str | None = None  # "cancelled" | "lost"
    interrupted: bool = False
    in_progress: bool = True
    taken: bool = False
    killing: bool = False


class Supervisor:
    def __init__(
        self,
        heartbeat_seconds: float,
        cancel_grace_seconds: float,
        lease_seconds: float,
        kill: Kill = os.kill,
    ) -> None:
        self.heartbeat_seconds = heartbeat_seconds
        self.cancel_grace_seconds = cancel_grace_seconds
        self.lease_budget = lease_budget(lease_seconds)
        self.backstop_seconds = cancel_grace_seconds + BACKSTOP_SECONDS
        self.can_terminate = False
        self._kill_process = kill
        self._runs: dict[UUID, Ticket] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._pid = os.getpid()
        self._interruptible = False
        self._handlers_installed = False

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
        renewed_at: float,
    ) -> Iterator[Ticket]:
        """Supervise one attempt while the block runs; `renewed_at` is when its claim was sent."""
        now = clock()
        ticket = Ticket(
            attempt,
            cancel_event,
            terminate,
            renewed_at,
            None if limits.soft_seconds is None else now + limits.soft_seconds,
            None if limits.hard_seconds is None else now + limits.hard_seconds,
        )
        self._install_handlers()
        with self._lock:
            self._runs[run_id] = ticket
            self._ensure_threads()
        self._arm()
        self.check_deadlines()  # a claim that took too long never starts its pipeline
        try:
            yield ticket
        finally:
            with self._lock:
                ticket.in_progress = False
                self._runs.pop(run_id, None)
            self._arm()

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """The pipeline call: the only code a soft time limit may interrupt."""
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    # The heartbeat thread.
    def beat(self) -> bool:
        """Renew every tracked run's lease in one statement; act on what comes back."""
        with self._lock:
            beats = {run_id: ticket.attempt for run_id, ticket in self._runs.items()}
        if not beats:
            return True
        sent = clock()
        try:
            with db.hot_connection() as conn:
                answers = store.heartbeat(conn, beats)
        except psycopg.Error as error:
            log.warning("heartbeat failed, will try again: %s", error)
            return False
        for run_id in beats:
            self.notice(run_id, run_id in answers, answers.get(run_id), sent)
        return True

    def notice(self, run_id: UUID, owned: bool, cancel_age: float | None, sent: float) -> None:
        """Act on what a write for the run learned (heartbeat or progress report), sent at
        `sent`: an owned row renews the lease; a run that lost its row, or was cancelled,
        must stop, and its grace starts."""
        with self._lock:
            ticket = self._runs.get(run_id)
        if ticket is None:
            return
        if not owned:
            self._stop(run_id, ticket, "lost", 0.0)
            self._kill(run_id, ticket, "its row was taken over or ended elsewhere")
            return
        ticket.renewed_at = max(ticket.renewed_at, sent)
        self._arm()
        if cancel_age is not None:
            self._stop(run_id, ticket, "cancelled", self.cancel_grace_seconds - cancel_age)

    # The watchdog thread (and SIGCONT): no I/O here, ever.
    def check_deadlines(self) -> None:
        now = clock()
        with self._lock:
            due = list(self._runs.items())
        for run_id, ticket in due:
            if now - ticket.renewed_at >= self.lease_budget:
                self._kill(run_id, ticket, "its lease could not be renewed in time")
            elif _passed(ticket.stop_deadline, now) and ticket.stop_reason == "lost":
                self._kill(run_id, ticket, "its lease was taken over")
            elif _passed(ticket.stop_deadline, now):
                self._end(run_id, ticket, "cancelled")
            elif _passed(ticket.hard_deadline, now):
                self._end(run_id, ticket, "timeout")
            elif _passed(ticket.soft_deadline, now) and not ticket.interrupted:
                ticket.interrupted = True
                self._interrupt(run_id, ticket)

    def _stop(self, run_id: UUID, ticket: Ticket, reason: str, grace: float) -> None:
        """Tell the run to stop (once); its grace starts (once)."""
        if not ticket.cancel_event.is_set():
            log.info("run %s must stop: %s", run_id, reason)
            ticket.cancel_event.set()
        if ticket.stop_deadline is None:
            ticket.stop_reason = reason
            ticket.stop_deadline = clock() + max(0.0, grace)

    def _interrupt(self, run_id: UUID, ticket: Ticket) -> None:
        with self._lock:
            if not (ticket.in_progress and not ticket.taken):
                return
            if not self.can_terminate:
                log.warning("run %s is over its soft time limit; cannot interrupt it here", run_id)
                return
            log.warning("run %s is over its soft time limit: interrupting it", run_id)
            self._kill_process(os.getpid(), signal.SIGUSR1)

    def _end(self, run_id: UUID, ticket: Ticket, how: str) -> None:
        """Take the attempt over, write its end (off this thread: the write may wait for the
        database), then terminate the process if the run is still the one in progress."""
        with self._lock:
            if not ticket.in_progress or ticket.taken:
                return
            ticket.taken = True
        log.warning("run %s did not stop in time: ending it as %s", run_id, how)

        def write_then_kill() -> None:
            try:
                ticket.terminate(how)
            finally:
                self._kill(run_id, ticket, f"it was ended as {how}")

        threading.Thread(target=write_then_kill, name="runway-end", daemon=True).start()

    def _kill(self, run_id: UUID, ticket: Ticket, why: str) -> None:
        with self._lock:
            if not ticket.in_progress or ticket.killing:
                return
            if not self.can_terminate:
                ticket.stop_reason = ticket.stop_reason or "lease"
                if not ticket.cancel_event.is_set():
                    log.warning("run %s must stop (%s); it can only be asked here", run_id, why)
                    ticket.cancel_event.set()
                return
            ticket.taken = ticket.killing = True
            log.warning("run %s: terminating its process, %s", run_id, why)
            self._kill_process(os.getpid(), signal.SIGKILL)

    # Signals, in a prefork child's main thread (the one that runs pipelines).
    def _install_handlers(self) -> None:
        if self._handlers_installed or not self.can_terminate:
            return
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGUSR1, self._on_soft_limit)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the lease timer ends the process
        self._handlers_installed = True

    def _on_soft_limit(self, signum: int, frame: FrameType | None) -> None:
        if self._interruptible:
            raise SoftTimeLimitExceeded()

    def _arm(self) -> None:
        """Set the kernel's timer to the earliest last moment of this process's runs (off
        when it has none). Only where the process may end itself."""
        if not self._handlers_installed:
            return
        with self._lock:  # set under the lock: a run that ends meanwhile disarms after this
            deadlines = [self._last_moment(ticket) for ticket in self._runs.values()]
            remaining = max(0.001, min(deadlines) - clock()) if deadlines else 0.0
            signal.setitimer(signal.ITIMER_REAL, remaining)

    def _last_moment(self, ticket: Ticket) -> float:
        """When the kernel ends the process if nothing else has: the lease's deadline, and
        for a run that keeps its lease, its hard time limit plus a margin. That is the
        backstop in case the watchdog cannot act; Celery's own per-task time limit would
        keep a timer per task in the worker's main process (see celeryconfig.py)."""
        deadline = ticket.renewed_at + self.lease_budget
        if ticket.hard_deadline is not None:
            deadline = min(deadline, ticket.hard_deadline + self.backstop_seconds)
        return deadline

    def _ensure_threads(self) -> None:
        if self._pid != os.getpid():  # forked: the parent's threads do not exist here
            self._pid, self._threads = os.getpid(), []
        if self._threads and all(thread.is_alive() for thread in self._threads):
            return
        self._threads = [
            threading.Thread(target=loop, name=name, daemon=True)
            for loop, name in (
                (self._heartbeat_loop, "runway-heartbeat"),
                (self._watchdog_loop, "runway-watchdog"),
            )
        ]
        for thread in self._threads:
            thread.start()

    def _heartbeat_loop(self) -> None:
        while True:
            delay = self.heartbeat_seconds
            try:
                delay = self.heartbeat_seconds if self.beat() else HEARTBEAT_RETRY_SECONDS
            except Exception:  # this thread must outlive any one failure
                log.exception("supervisor heartbeat: unexpected error, carrying on")
            time.sleep(delay)

    def _watchdog_loop(self) -> None:
        while True:
            time.sleep(WATCH_SECONDS)
            try:
                self.check_deadlines()
            except Exception:  # this thread must outlive any one failure
                log.exception("supervisor watchdog: unexpected error, carrying on")


def _passed(deadline: float | None, now: float) -> bool:
    return deadline is not None and now >= deadline
