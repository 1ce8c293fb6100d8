"""/status, /workers, /metrics: what an operator watches."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.deps import WorkspaceDep
from api.responses import AUTHORIZED
from api.schemas import RunOut, StatusOut, WorkerOut, WorkersOut
from app import monitoring

router = APIRouter(tags=["operations"], responses=AUTHORIZED)


@router.get("/status")
def get_status(workspace: WorkspaceDep) -> StatusOut:
    """The workspace's runs by status. Runs that flow control holds back are counted once,
    in `waiting_count`, not in `pending_count` or `retrying_count`."""
    found = monitoring.status(workspace)
    counts = found.counts
    shown = {state: number - found.waiting.get(state, 0) for state, number in counts.items()}
    return StatusOut(
        **{f"{state}_count": number for state, number in shown.items()},
        waiting_count=sum(found.waiting.values()),
        total_count=sum(counts.values()),
        is_processing=counts["pending"] + counts["running"] + counts["retrying"] > 0,
        recent_failures=[RunOut.of(row) for row in found.recent_failures],
    )


@router.get("/workers")
def get_workers(_: WorkspaceDep) -> WorkersOut:
    """The Celery workers that answer now, with their load. Workers are shared by every
    workspace, so every key sees the same list; 503 when the broker does not answer."""
    found = monitoring.workers()
    return WorkersOut(
        online_count=len(found),
        workers=[WorkerOut(name=w.name, active=w.active, processed=w.processed) for w in found],
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
def get_metrics(workspace: WorkspaceDep) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(monitoring.WorkspaceMetrics(workspace))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
