"""Runway's error types. The API maps them to HTTP statuses in one handler."""

from __future__ import annotations


class RunwayError(Exception):
    """Base of every error Runway raises on purpose."""


class NotFound(RunwayError):
    def __init__(self, what: str, ident: object) -> None:
        super().__init__(f"{what} {ident} not found")


class Unauthenticated(RunwayError):
    """The API key is unknown or revoked (HTTP 401)."""

    def __init__(self, message: str = "invalid or revoked API key") -> None:
        super().__init__(message)


class Conflict(RunwayError):
    """The request is valid but the current state forbids it (HTTP 409)."""


class InvalidInput(RunwayError):
    """A value the caller sent is unacceptable; `field` names it (HTTP 422)."""

    def __init__(self, field: str, message: str, location: str = "body") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.location = location


class PermanentError(RunwayError):
    """Raised by a pipeline: fail the run now, do not retry."""


class Cancelled(RunwayError):
    """Raised inside a pipeline when its run was cancelled."""


class DatabaseUnavailable(RunwayError):
    """Postgres did not answer (HTTP 503)."""


class BrokerUnavailable(RunwayError):
    """The broker (Redis) did not answer (HTTP 503)."""
