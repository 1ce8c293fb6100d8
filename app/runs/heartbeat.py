"""Per-process heartbeats: one UPDATE per interval for every run the process is executing.

Each beat renews the runs' leases and brings back cancel requests, which set the runs' cancel
events. A run whose row no longer answers (its lease was taken over, or it ended) is told to
stop the same way; its final write would lose anyway.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from uuid import UUID

import psycopg

from app import db
from app.runs import store

log = logging.getLogger(__name__)


@dataclass
class _Tracked:
    attempt: int
    cancel_event: threading.Event


class Heartbeats:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._runs: dict[UUID, _Tracked] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    @contextmanager
    def track(self, run_id: UUID, attempt: int, cancel_event: threading.Event) -> Iterator[None]:
        with self._lock:
            self._runs[run_id] = _Tracked(attempt, cancel_event)
            self._ensure_thread()
        try:
            yield
        finally:
            with self._lock:
                self._runs.pop(run_id, None)

    def beat(self) -> None:
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
            if answers.get(run_id, True):
                self._stop(run_id, lost=run_id not in answers)

    def _stop(self, run_id: UUID, lost: bool) -> None:
        with self._lock:
            tracked = self._runs.get(run_id)
        if tracked is not None and not tracked.cancel_event.is_set():
            log.info("run %s must stop: %s", run_id, "lease lost" if lost else "cancel requested")
            tracked.cancel_event.set()

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():  # forked: the parent's thread does not exist here
            self._pid, self._thread = os.getpid(), None
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="runway-heartbeat", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._wake.wait(self.interval):
            self.beat()
