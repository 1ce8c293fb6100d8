"""Dependencies shared by the routes: the caller's workspace, from its API key."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app import db, workspaces

_bearer = HTTPBearer(auto_error=False, description="An API key from `runway keys create`.")


async def workspace_id(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> UUID:
    """On the event loop: one round trip, and no trip through the thread pool."""
    if credentials is None:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    async with db.async_autocommit() as conn:
        found = await workspaces.workspace_for_key_async(conn, credentials.credentials)
    if found is None:
        raise _unauthorized("invalid or revoked API key")
    return found


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


WorkspaceDep = Annotated[UUID, Depends(workspace_id)]
