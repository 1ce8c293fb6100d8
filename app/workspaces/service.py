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
from app.limits import gate
from app.workspaces import store


@dataclass(frozen=True)
class IssuedKey:
    id: UUID
    workspace_id: UUID
    key: str  # shown only now: only its hash is stored


MAX_NAME_LENGTH = 100
MAX_CONCURRENT = 1_000_000


def issue_key(workspace: str, name: str = "") -> IssuedKey:
    """Create the workspace if needed and a new key for it."""
    _check_name("workspace", workspace)
    _check_name("name", name, allow_empty=True)
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
    """Cap how many of the workspace's runs may run at once; None removes the cap. Runs
    waiting on the old cap that the new one lets start are released at once."""
    if value is not None and not 1 <= value <= MAX_CONCURRENT:
        raise InvalidInput(
            "max_concurrent", f"must be from 1 to {MAX_CONCURRENT}, or none for no cap"
        )
    with db.unit_of_work() as conn:
        row = store.set_max_concurrent(conn, workspace, value)
    if row is None:
        raise NotFound("workspace", workspace)
    gate.release(row.id, [])
    return row


def _check_name(field: str, value: str, *, allow_empty: bool = False) -> None:
    if not value.strip() and not (allow_empty and value == ""):
        raise InvalidInput(field, "must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidInput(field, f"at most {MAX_NAME_LENGTH} characters")
    if not value.isprintable():
        raise InvalidInput(field, "no control characters")
