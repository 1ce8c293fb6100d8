"""Prometheus metrics and /status for one workspace, read from run_tallies.

Triggers on pipeline_executions keep the tallies in the statement that changes a run, so
every worker, beat and API process adds to the same sums, nothing is lost on a restart, and
a scrape reads a few hundred rows whatever the number of runs stored. Counters only rise;
durations and lags are histograms (cumulative buckets, `_sum`, `_count`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError

from app import db
from app.monitoring import flow, tallies
from app.runs import dispatch, store
from app.settings import get_settings
from app.states import TERMINAL, RunStatus
from app.webhooks import store as webhooks_store

RECENT_FAILURES = 10
QUEUE_DEPTH_TIMEOUT = 1.0

# The bucket bounds migration 0005 gave the triggers; a bound found in the tallies but not
# here is reported too, so the two can never disagree silently.
DURATION_BOUNDS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 10800)
LAG_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)

HISTOGRAMS = (
    (
        "run_duration_seconds",
        DURATION_BOUNDS,
        "Runs that completed: seconds from their first start to their completion.",
    ),
    (
        "schedule_lag_seconds",
        LAG_BOUNDS,
        "Scheduled runs: seconds from their slot to their first start.",
    ),
)
COUNTERS = (
    ("retries", "Runs that went back to retrying after an attempt (rescues included)."),
    ("rescues", "Running runs whose worker stopped answering, taken back by the sweep."),
    ("republishes", "Runs published again: lost messages, and messages that came early."),
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Status:
    counts: dict[str, int]  # every status, zero included
    recent_failures: Sequence[Row[Any]]  # newest first
    waiting: dict[str, int]  # of `counts`' pending and retrying runs, those that wait


def status(workspace_id: UUID) -> Status:
    """The workspace's runs by status and its latest failures, at the same cost for a
    thousand runs as for ten million (tallies, and an index on the failures)."""
    with db.unit_of_work() as conn:
        found = tallies.sums(conn, workspace_id)
        failures = store.recent_failures(conn, workspace_id, RECENT_FAILURES)
        waiting = flow.waiting_by_status(conn, workspace_id)
    counts = {state.value: round(found.get(f"runs:{state.value}", 0)) for state in RunStatus}
    held = {
        state.value: waiting.get(state.value, 0)
        for state in (RunStatus.PENDING, RunStatus.RETRYING)
    }
    return Status(counts, failures, held)


def count_republished(run_ids: Sequence[UUID]) -> None:
    """Add the runs just published again to their workspaces' `republishes` counter. A count
    that cannot be written is lost (and logged), never the publish it counts."""
    if not run_ids:
        return
    try:
        with db.unit_of_work() as conn:
            tallies.add_per_run(conn, "republishes", run_ids)
    except DBAPIError as error:
        log.warning("could not count %d re-published run(s): %s", len(run_ids), error)


class WorkspaceMetrics(Collector):
    """Prometheus metrics of one workspace (the queue depth is the shared queue's)."""

    def __init__(self, workspace_id: UUID) -> None:
        self.workspace_id = workspace_id

    def collect(self) -> Iterator[Metric]:
        with db.unit_of_work() as conn:
            found = tallies.sums(conn, self.workspace_id)
            keys = flow.key_use(conn, self.workspace_id)
            pending = webhooks_store.pending(conn, self.workspace_id)
        runs = GaugeMetricFamily("runway_runs", "Runs stored, by status.", labels=["status"])
        for state in RunStatus:
            runs.add_metric([state.value], found.get(f"runs:{state.value}", 0))
        yield runs
        yield _queue_depth()
        for name, bounds, documentation in HISTOGRAMS:
            yield _histogram(name, bounds, documentation, found)
        for name, documentation in COUNTERS:
            yield CounterMetricFamily(f"runway_{name}", documentation, found.get(name, 0))
        yield _ended(found)
        yield from _limit_keys(keys)
        yield from _deliveries(pending, found)


def _ended(found: Mapping[str, float]) -> Metric:
    """Runs that reached each terminal status: unlike `runway_runs`, retention never lowers it."""
    ended = CounterMetricFamily(
        "runway_runs_ended", "Runs that ended, by terminal status.", labels=["status"]
    )
    for state in sorted(TERMINAL):
        ended.add_metric([state.value], found.get(f"ended:{state.value}", 0))
    return ended


def _limit_keys(keys: Sequence[flow.KeyUse]) -> Iterator[Metric]:
    """Per limit key that has a limit: its runs running now, and those waiting to start."""
    running = GaugeMetricFamily(
        "runway_limit_running", "Runs naming the limit key that are running.", labels=["key"]
    )
    waiting = GaugeMetricFamily(
        "runway_limit_waiting", "Runs naming the limit key that wait to start.", labels=["key"]
    )
    for use in keys:
        running.add_metric([use.key], use.running)
        waiting.add_metric([use.key], use.waiting)
    yield running
    yield waiting


def _deliveries(pending: webhooks_store.Pending, found: Mapping[str, float]) -> Iterator[Metric]:
    """The workspace's webhook deliveries: ended, by outcome (from the tallies the deliverer
    keeps), pending now, and how long the oldest pending one has waited (0: none)."""
    ended = CounterMetricFamily(
        "runway_webhook_deliveries",
        "Webhook deliveries that ended, by outcome (failed: attempts used up).",
        labels=["status"],
    )
    for status in ("delivered", "failed"):
        ended.add_metric([status], found.get(f"webhooks:{status}", 0))
    yield ended
    yield GaugeMetricFamily(
        "runway_webhook_deliveries_pending",
        "Webhook deliveries waiting to be delivered (or tried again).",
        value=pending.count,
    )
    yield GaugeMetricFamily(
        "runway_webhook_oldest_pending_seconds",
        "Age of the oldest webhook delivery not yet delivered nor failed.",
        value=pending.oldest_seconds,
    )


def _queue_depth() -> Metric:
    """Messages waiting in the runs queue; no sample when Redis does not answer."""
    queue = GaugeMetricFamily(
        "runway_queue_depth", "Messages waiting in the broker's queue.", labels=["queue"]
    )
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=QUEUE_DEPTH_TIMEOUT)
    try:
        # Redis keeps each queue as one list per priority step.
        queue.add_metric([settings.runs_queue], dispatch.queue_depth(client, settings.runs_queue))
    except redis.RedisError as error:
        log.warning("queue depth unknown: %s", error)
    finally:
        client.close()
    return queue


def _histogram(
    name: str, bounds: Sequence[float], documentation: str, found: Mapping[str, float]
) -> Metric:
    """Cumulative buckets from the per-bucket tallies `<name>:le:<bound>`."""
    prefix = f"{name}:le:"
    stored = {
        float(key.removeprefix(prefix)): value
        for key, value in found.items()
        if key.startswith(prefix)
    }
    buckets: list[tuple[str, float]] = []
    total = 0.0
    for edge in sorted({*map(float, bounds), *stored, math.inf}):
        total += stored.get(edge, 0)
        buckets.append(("+Inf" if edge == math.inf else repr(edge), total))
    return HistogramMetricFamily(
        f"runway_{name}", documentation, buckets=buckets, sum_value=found.get(f"{name}:sum", 0)
    )
