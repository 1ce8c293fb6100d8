"""What operators watch: Prometheus metrics and /status per workspace, and the workers."""

from __future__ import annotations

from app.monitoring.metrics import Status, WorkspaceMetrics, count_republished, status
from app.monitoring.workers import WorkerInfo, workers

__all__ = ["Status", "WorkerInfo", "WorkspaceMetrics", "count_republished", "status", "workers"]
