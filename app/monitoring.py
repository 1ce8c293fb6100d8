"""What operators watch: the workers Celery can see, and Prometheus metrics from Postgres.

Metrics are read at scrape time from the system of record (runs by status, run durations,
scheduling lag over the last hour) and from the broker (queue depth), so every API process
reports the same numbers and nothing is lost when a process restarts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app import db, housekeeping
from app.celery import app
from app.runs import store
from app.settings import get_settings
from app.states import RunStatus

INSPECT_TIMEOUT = 1.0
QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    active: int
    processed: int


def workers() -> list[WorkerInfo]:
    """Workers that answered a broadcast within a second, with their load."""
    inspect = app.control.inspect(timeout=INSPECT_TIMEOUT)
    stats: dict[str, Any] = inspect.stats() or {}
    active: dict[str, list[Any]] = inspect.active() or {}
    return [
        WorkerInfo(name, len(active.get(name, [])), sum(info.get("total", {}).values()))
        for name, info in sorted(stats.items())
    ]


class WorkspaceMetrics(Collector):
    """Prometheus metrics for one workspace, computed when scraped."""

    def __init__(self, workspace_id: UUID) -> None:
        self.workspace_id = workspace_id

    def collect(self) -> Iterator[Metric]:
        with db.unit_of_work() as conn:
            counts = store.counts_by_status(conn, self.workspace_id)
            durations = store.recent_quantiles(
                conn,
                self.workspace_id,
                ("started_at", "completed_at"),
                QUANTILES,
                status=RunStatus.COMPLETED,
            )
            lags = store.recent_quantiles(
                conn,
                self.workspace_id,
                ("scheduled_for", "started_at"),
                QUANTILES,
                run_type="scheduled",
            )
        runs = GaugeMetricFamily("runway_runs", "Runs by status.", labels=["status"])
        for state in RunStatus:
            runs.add_metric([state.value], counts.get(state.value, 0))
        yield runs
        queue = GaugeMetricFamily("runway_queue_depth", "Messages waiting.", labels=["queue"])
        runs_queue = get_settings().runs_queue
        queue.add_metric([runs_queue], housekeeping.queue_depth(runs_queue))
        yield queue
        yield _summary(
            "runway_run_duration_seconds",
            "Completed runs' duration (first start to end), last hour.",
            durations,
        )
        yield _summary(
            "runway_schedule_lag_seconds", "Scheduled runs: slot to start, last hour.", lags
        )


def _summary(name: str, documentation: str, values: list[float]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=["quantile"])
    for quantile, value in zip(QUANTILES, values, strict=False):
        family.add_metric([str(quantile)], value)
    return family
