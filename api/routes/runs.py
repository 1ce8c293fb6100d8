"""/runs: trigger, read, list, cancel and retry pipeline runs."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Response, status

from api.deps import WorkspaceDep
from api.schemas import CleanupIn, CleanupOut, RunCreate, RunOut, RunPage, RunStatusName
from app.runs import service
from app.states import RunStatus, RunType

router = APIRouter(prefix="/runs", tags=["runs"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00]*$",
        description="Repeat a request safely: the same key returns the run it made first.",
    ),
]


@router.post("", status_code=status.HTTP_202_ACCEPTED)
def create_run(
    body: RunCreate, workspace: WorkspaceDep, response: Response, key: IdempotencyKey = None
) -> RunOut:
    made = service.create(workspace, body.stream_id, RunType(body.run_type), body.params, key)
    if not made.created:
        response.status_code = status.HTTP_200_OK
    return RunOut.of(made.run)


@router.get("")
def list_runs(
    workspace: WorkspaceDep,
    stream_id: UUID | None = None,
    status_: Annotated[RunStatusName | None, Query(alias="status")] = None,
    run_type: Annotated[RunType | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_-]*$")] = None,
) -> RunPage:
    wanted = {"stream_id": stream_id, "status": status_, "run_type": run_type}
    filters: dict[str, Any] = {name: value for name, value in wanted.items() if value is not None}
    found = service.page(workspace, filters, cursor, limit)
    return RunPage(items=[RunOut.of(row) for row in found.items], next_cursor=found.next_cursor)


@router.post("/cleanup")
def cleanup_runs(body: CleanupIn, workspace: WorkspaceDep) -> CleanupOut:
    """Delete this workspace's runs that ended with `status` more than `older_than_days` ago."""
    deleted = service.cleanup(workspace, RunStatus(body.status), body.older_than_days)
    return CleanupOut(deleted=deleted)


@router.get("/{run_id}")
def get_run(run_id: UUID, workspace: WorkspaceDep) -> RunOut:
    return RunOut.of(service.get(workspace, run_id))


@router.delete("/{run_id}")
def cancel_run(run_id: UUID, workspace: WorkspaceDep) -> RunOut:
    return RunOut.of(service.cancel(workspace, run_id))


@router.post("/{run_id}/retry", status_code=status.HTTP_202_ACCEPTED)
def retry_run(run_id: UUID, workspace: WorkspaceDep) -> RunOut:
    return RunOut.of(service.retry(workspace, run_id))
