"""Pipelines by name. Built-ins register on load; others come from RUNWAY_PIPELINES modules."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from app.errors import InvalidInput, PermanentError
from app.pipelines.context import RunContext
from app.runs.supervisor import Limits
from app.settings import Settings

Pipeline = Callable[[RunContext], Mapping[str, Any] | None]

BUILTIN_MODULES = ("app.pipelines.builtin", "app.pipelines.demo_report")

_pipelines: dict[str, Pipeline] = {}
_limits: dict[str, tuple[float | None, float | None]] = {}


def register(
    name: str,
    function: Pipeline,
    soft_time_limit: float | None = None,
    time_limit: float | None = None,
) -> Pipeline:
    existing = _pipelines.get(name)
    if existing is not None and existing is not function:
        raise ValueError(f"pipeline {name!r} is already registered by {existing.__module__}")
    _pipelines[name] = function
    _limits[name] = (soft_time_limit, time_limit)
    return function


def pipeline(
    name: str, *, soft_time_limit: float | None = None, time_limit: float | None = None
) -> Callable[[Pipeline], Pipeline]:
    """Decorator: `@pipeline("acme.digest")` registers the function under that name.

    `soft_time_limit` (seconds): the run is interrupted and ends with error_type `timeout`,
    retried like any other error. `time_limit`: the run's process is terminated (default:
    soft + the cancel grace). Both are capped by RUNWAY_RUN_TIME_LIMIT_SECONDS.
    """

    def decorate(function: Pipeline) -> Pipeline:
        return register(name, function, soft_time_limit, time_limit)

    return decorate


def limits(name: str, settings: Settings) -> Limits:
    """The time limits a run of `name` gets: the pipeline's own, within the global cap."""
    soft, hard = _limits.get(name, (None, None))
    cap = settings.run_time_limit_seconds
    soft = min(soft or cap, cap)
    hard = min(hard or soft + settings.cancel_grace_seconds, cap + settings.cancel_grace_seconds)
    return Limits(soft, max(hard, soft))


class PluginError(ImportError):
    """A module named in RUNWAY_PIPELINES could not be imported."""


def load(modules: Iterable[str] = ()) -> None:
    """Import the built-ins and the given plug-in modules (each registers its pipelines)."""
    for module in (*BUILTIN_MODULES, *modules):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise PluginError(f"RUNWAY_PIPELINES: cannot import {module!r}: {error}") from error


def names() -> list[str]:
    return sorted(_pipelines)


def require(name: str) -> None:
    """Validate a stream's pipeline name (HTTP 422 naming the field when unknown)."""
    if name not in _pipelines:
        known = ", ".join(names()) or "none"
        raise InvalidInput("pipeline", f"unknown pipeline {name!r}; registered: {known}")


def get(name: str) -> Pipeline:
    """The pipeline to execute; a worker that lacks it fails the run for good."""
    try:
        return _pipelines[name]
    except KeyError:
        raise PermanentError(
            f"pipeline {name!r} is not registered in this worker (check RUNWAY_PIPELINES)"
        ) from None
