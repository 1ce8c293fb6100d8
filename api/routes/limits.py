"""/limits: the workspace's limit keys, their caps and how many runs use them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from api.deps import WorkspaceDep
from api.flow import LimitIn, LimitList, LimitOut
from api.responses import AUTHORIZED, BODY, INVALID, NOT_FOUND, answers
from app.limits import service
from app.limits.service import KEY_PATTERN, Rate

router = APIRouter(prefix="/limits", tags=["limits"], responses=AUTHORIZED)

Key = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=KEY_PATTERN,
        description="The limit key: 1 to 64 of `a-z 0-9 . _ : -`, as streams name it.",
    ),
]


@router.get("")
def list_limits(workspace: WorkspaceDep) -> LimitList:
    """Every key of the workspace that has a limit, by key."""
    return LimitList(items=[LimitOut.of(limit) for limit in service.list_all(workspace)])


@router.put("/{key}", responses=BODY)
def put_limit(key: Key, body: LimitIn, workspace: WorkspaceDep) -> LimitOut:
    """Set the key's limit, replacing the one it had (a field left out is null). Runs waiting
    on the key that the new limit lets start are released at once."""
    rate = None if body.rate is None else Rate(body.rate.count, body.rate.period_seconds)
    return LimitOut.of(service.put(workspace, key, body.max_concurrent, rate))


@router.get("/{key}", responses=answers(NOT_FOUND, INVALID))
def get_limit(key: Key, workspace: WorkspaceDep) -> LimitOut:
    return LimitOut.of(service.get(workspace, key))


@router.delete(
    "/{key}", status_code=status.HTTP_204_NO_CONTENT, responses=answers(NOT_FOUND, INVALID)
)
def delete_limit(key: Key, workspace: WorkspaceDep) -> Response:
    """Remove the key's limit: runs waiting on it may start at once."""
    service.delete(workspace, key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
