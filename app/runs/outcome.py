"""How one attempt ended, and the retry policy that decides it for errors."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from app.errors import PermanentError
from app.jsonvalues import storable_text
from app.states import RunStatus


@dataclass(frozen=True)
class Outcome:
    """The final write of an attempt: persisted by one conditional UPDATE."""

    status: RunStatus
    result: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    retry_in: float | None = None

    @classmethod
    def completed(cls, result: dict[str, Any]) -> Outcome:
        return cls(RunStatus.COMPLETED, result=result)

    @classmethod
    def cancelled(cls, reason: str = "cancelled on request") -> Outcome:
        return cls(RunStatus.CANCELLED, error=reason, error_type="cancelled")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: base, 2*base, 4*base ... capped at `max_seconds`."""

    base_seconds: float
    max_seconds: float

    def delay(self, attempt: int) -> float:
        ceiling = min(self.max_seconds, self.base_seconds * 2.0 ** max(0, attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def decide(
        self, error: BaseException, error_type: str, attempt: int, max_attempts: int
    ) -> Outcome:
        message = storable_text(str(error)) or type(error).__name__
        if isinstance(error, PermanentError) or attempt >= max_attempts:
            return Outcome(RunStatus.FAILED, error=message, error_type=error_type)
        return Outcome(
            RunStatus.RETRYING, error=message, error_type=error_type, retry_in=self.delay(attempt)
        )
