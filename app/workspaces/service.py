"""Workspaces and API keys as operators manage them: one transaction per call."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy.engine import Row

from app import db
from app.errors import InvalidInput, NotFound
from app.workspaces import store


@dataclass(frozen=True)
class IssuedKey:
    id: UUID
    workspace_id: UUID
    key: str  # shown only now: only its hash is stored


def issue_key(workspace: str, name: str = "") -> IssuedKey:
    """Create the workspace if needed and a new key for it."""
    key = store.KEY_PREFIX + secrets.token_urlsafe(32)
    with db.unit_of_work() as conn:
        workspace_id = store.ensure_workspace(conn, workspace)
        key_id = store.insert_key(conn, workspace_id, key, name)
    return IssuedKey(key_id, workspace_id, key)


def create_key(workspace: str, name: str = "") -> tuple[UUID, str]:
    """Create the workspace if needed and a new key for it: (workspace id, key)."""
    issued = issue_key(workspace, name)
    return issued.workspace_id, issued.key


def lookup(name: str) -> UUID:
    """The id of the workspace called `name`."""
    with db.unit_of_work() as conn:
        row = store.find(conn, name)
    if row is None:
        raise NotFound("workspace", name)
    workspace_id: UUID = row.id
    return workspace_id


def list_keys(workspace: str) -> Sequence[Row[Any]]:
    with db.unit_of_work() as conn:
        row = store.find(conn, workspace)
        if row is None:
            raise NotFound("workspace", workspace)
        return store.keys_of(conn, row.id)


def revoke_key(key_id: UUID) -> Row[Any]:
    """From now on the key answers 401. Revoking a revoked key changes nothing."""
    with db.unit_of_work() as conn:
        row = store.revoke_key(conn, key_id)
    if row is None:
        raise NotFound("key", key_id)
    return row


def list_workspaces() -> Sequence[Row[Any]]:
    """Every workspace, with its live (pending, running, retrying) run counts."""
    with db.unit_of_work() as conn:
        return store.with_live_counts(conn)


def set_max_concurrent(workspace: str, value: int | None) -> Row[Any]:
    """Cap how many of the workspace's runs may run at once; None removes the cap."""
    if value is not None and value < 1:
        raise InvalidInput("max_concurrent", "must be at least 1, or none for no cap")
    with db.unit_of_work() as conn:
        row = store.set_max_concurrent(conn, workspace, value)
    if row is None:
        raise NotFound("workspace", workspace)
    return row
