"""/runs: trigger, read, list, cancel and retry pipeline runs."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Response, status

from api.bulk import BulkCancelIn, BulkCancelOut, BulkRetryIn, BulkRetryOut
from api.deps import ApiKeyDep, WorkspaceDep
from api.responses import AUTHORIZED, BODY, CONFLICT, INVALID, NOT_FOUND, answers, json_answer
from api.schemas import CleanupIn, CleanupOut, Cursor, RunCreate, RunOut, RunPage, RunStatusName
from app import retention
from app.runs import bulk, service
from app.states import RunStatus, RunType

router = APIRouter(prefix="/runs", tags=["runs"], responses=AUTHORIZED)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00]*$",
        description="Repeat a request safely: the same key returns the run it made first "
        "(200). 1 to 200 characters, no NUL.",
    ),
]


# The busiest routes run on the event loop, Postgres and Redis included, and answer their
# model as JSON themselves: FastAPI would validate a returned model a second time.
@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunOut,
    responses=answers(
        {200: {"model": RunOut, "description": "The run this Idempotency-Key made before."}},
        NOT_FOUND,
        CONFLICT,
        BODY,
    ),
)
async def create_run(body: RunCreate, api_key: ApiKeyDep, key: IdempotencyKey = None) -> Response:
    new = service.NewRun(body.stream_id, RunType(body.run_type), body.params, key, body.priority)
    made = await service.create_async(api_key, new)
    answer = status.HTTP_202_ACCEPTED if made.created else status.HTTP_200_OK
    return json_answer(RunOut.of(made.run), answer)


@router.get("", responses=INVALID)
def list_runs(
    workspace: WorkspaceDep,
    stream_id: UUID | None = None,
    status_: Annotated[RunStatusName | None, Query(alias="status")] = None,
    run_type: Annotated[RunType | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[Cursor | None, Query()] = None,
) -> RunPage:
    wanted = {"stream_id": stream_id, "status": status_, "run_type": run_type}
    filters: dict[str, Any] = {name: value for name, value in wanted.items() if value is not None}
    found = service.page(workspace, filters, cursor, limit)
    return RunPage(
        items=[RunOut.of(row) for row in found.items],
        next_cursor=found.next_cursor,
    )


@router.post("/cleanup", responses=BODY)
def cleanup_runs(body: CleanupIn, workspace: WorkspaceDep) -> CleanupOut:
    """Delete this workspace's runs that ended with `status` more than `older_than_days` ago."""
    deleted = retention.cleanup(workspace, RunStatus(body.status), body.older_than_days)
    return CleanupOut(deleted=deleted)


@router.post("/cancel", responses=BODY)
def cancel_runs(body: BulkCancelIn, workspace: WorkspaceDep) -> BulkCancelOut:
    """Cancel every run the filter selects (at least one filter): waiting ones at once,
    running ones asked to stop."""
    selection = bulk.Selection(
        stream_id=body.stream_id,
        statuses=tuple(RunStatus(name) for name in body.status or ()),
        run_type=None if body.run_type is None else RunType(body.run_type),
        created_before=body.created_before,
    )
    done = bulk.cancel(workspace, selection)
    return BulkCancelOut(cancelled=done.cancelled, cancel_requested=done.cancel_requested)


@router.post("/retry", status_code=status.HTTP_202_ACCEPTED, responses=BODY)
def retry_runs(body: BulkRetryIn, workspace: WorkspaceDep) -> BulkRetryOut:
    """A new run, with `retry_of`, for each matching failed or cancelled run not retried
    before; at most 1,000 a call."""
    selection = bulk.Selection(
        stream_id=body.stream_id,
        statuses=(RunStatus(body.status),),
        run_type=None if body.run_type is None else RunType(body.run_type),
        completed_after=body.completed_after,
    )
    done = bulk.retry(workspace, selection)
    return BulkRetryOut(created=done.created, more=done.more)


@router.get("/{run_id:uuid}", response_model=RunOut, responses=answers(NOT_FOUND, INVALID))
async def get_run(run_id: UUID, api_key: ApiKeyDep) -> Response:
    return json_answer(RunOut.of(await service.get_async(api_key, run_id)))


@router.delete("/{run_id:uuid}", responses=answers(NOT_FOUND, CONFLICT, INVALID))
def cancel_run(run_id: UUID, workspace: WorkspaceDep) -> RunOut:
    return RunOut.of(service.cancel(workspace, run_id))


@router.post(
    "/{run_id:uuid}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    responses=answers(NOT_FOUND, CONFLICT, INVALID),
)
def retry_run(run_id: UUID, workspace: WorkspaceDep) -> RunOut:
    return RunOut.of(service.retry(workspace, run_id))
