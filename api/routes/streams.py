"""/streams: research streams and their schedules."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from api.bulk import BackfillIn, BackfillOut
from api.deps import WorkspaceDep
from api.responses import AUTHORIZED, BODY, CONFLICT, INVALID, NOT_FOUND, answers
from api.schemas import StreamCreate, StreamOut, StreamUpdate, TickOut
from app.schedules import backfill
from app.streams import service

router = APIRouter(prefix="/streams", tags=["streams"], responses=AUTHORIZED)


@router.post("", status_code=status.HTTP_201_CREATED, responses=BODY)
def create_stream(body: StreamCreate, workspace: WorkspaceDep) -> StreamOut:
    return StreamOut.of(service.create(workspace, body.model_dump(mode="json")))


@router.get("", responses=INVALID)
def list_streams(
    workspace: WorkspaceDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[StreamOut]:
    return [StreamOut.of(stream) for stream in service.list_all(workspace, limit, offset)]


@router.get("/{stream_id:uuid}", responses=answers(NOT_FOUND, INVALID))
def get_stream(stream_id: UUID, workspace: WorkspaceDep) -> StreamOut:
    return StreamOut.of(service.get(workspace, stream_id))


@router.get("/{stream_id:uuid}/ticks", responses=answers(NOT_FOUND, INVALID))
def list_ticks(
    stream_id: UUID, workspace: WorkspaceDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[TickOut]:
    return [TickOut.model_validate(tick) for tick in service.ticks(workspace, stream_id, limit)]


@router.patch("/{stream_id:uuid}", responses=answers(NOT_FOUND, CONFLICT, BODY))
def update_stream(stream_id: UUID, body: StreamUpdate, workspace: WorkspaceDep) -> StreamOut:
    changes = body.model_dump(mode="json", exclude_unset=True)
    return StreamOut.of(service.update(workspace, stream_id, changes))


@router.delete(
    "/{stream_id:uuid}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=answers(NOT_FOUND, INVALID),
)
def delete_stream(stream_id: UUID, workspace: WorkspaceDep) -> Response:
    service.delete(workspace, stream_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{stream_id:uuid}/backfill",
    status_code=status.HTTP_202_ACCEPTED,
    responses=answers(NOT_FOUND, CONFLICT, BODY),
)
def backfill_stream(stream_id: UUID, body: BackfillIn, workspace: WorkspaceDep) -> BackfillOut:
    """A scheduled run for every past slot of the stream's schedule in [from, to) that has
    none, each recorded as a `backfilled` tick; the same call again creates nothing. More
    than 1,000 slots is a 422 (split the range); a stream without a schedule, a 409."""
    done = backfill.backfill(workspace, stream_id, body.start, body.to, body.dry_run)
    return BackfillOut(
        slots=done.slots, created=done.created, existing=done.existing, dry_run=done.dry_run
    )
