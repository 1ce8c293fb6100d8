"""What a pipeline sees of its run: identity, params, progress reporting and cancellation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from app.errors import Cancelled

ProgressSink = Callable[[float, str], None]


@dataclass
class RunContext:
    run_id: UUID
    pipeline: str
    run_type: str
    attempt: int
    max_attempts: int
    stream_id: UUID
    stream_name: str | None
    params: dict[str, Any]
    report_progress: ProgressSink = field(repr=False)
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def cancelled(self) -> bool:
        """True once someone asked to cancel this run; stop soon and raise or return."""
        return self.cancel_event.is_set()

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled(f"run {self.run_id} was cancelled")

    def progress(self, percent: float, message: str = "") -> None:
        """Record how far the run is (0-100) with a short message; visible in GET /runs/{id}."""
        self.report_progress(max(0.0, min(100.0, float(percent))), message)

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up and raise `Cancelled` as soon as the run is cancelled."""
        if self.cancel_event.wait(timeout=max(0.0, seconds)):
            self.raise_if_cancelled()
