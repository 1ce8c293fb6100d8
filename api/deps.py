"""Dependencies shared by the routes: the caller's API key, and its workspace."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app import db, workspaces
from app.errors import Unauthenticated

MISSING_KEY = "missing API key: send 'Authorization: Bearer <key>'"
_bearer = HTTPBearer(auto_error=False, description="An API key from `runway keys create`.")


async def api_key(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The key as sent, not yet checked: for a route whose service checks it in the
    statement that does the work (app.errors.Unauthenticated when it is no key)."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            MISSING_KEY,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return credentials.credentials


async def workspace_id(key: Annotated[str, Depends(api_key)]) -> UUID:
    """The key's workspace; on the event loop: one round trip, no trip through the threads."""
    async with db.async_autocommit() as conn:
        found = await workspaces.workspace_for_key_async(conn, key)
    if found is None:
        raise Unauthenticated()
    return found


ApiKeyDep = Annotated[str, Depends(api_key)]
WorkspaceDep = Annotated[UUID, Depends(workspace_id)]
