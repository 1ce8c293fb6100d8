"""Workspaces and their API keys. Keys are random tokens; only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from app import db
from app.models import api_keys, workspaces

KEY_PREFIX = "rw_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def ensure_workspace(conn: Connection, name: str) -> UUID:
    statement = (
        insert(workspaces)
        .values(name=name)
        .on_conflict_do_update(index_elements=[workspaces.c.name], set_={"name": name})
        .returning(workspaces.c.id)
    )
    workspace_id: UUID = conn.execute(statement).scalar_one()
    return workspace_id


def create_key(workspace: str, name: str = "") -> tuple[UUID, str]:
    """Create the workspace if needed and a new key for it; the key is shown only now."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with db.unit_of_work() as conn:
        workspace_id = ensure_workspace(conn, workspace)
        conn.execute(
            sa.insert(api_keys).values(workspace_id=workspace_id, key_hash=hash_key(key), name=name)
        )
    return workspace_id, key


def workspace_for_key(conn: Connection, key: str) -> UUID | None:
    statement = sa.select(api_keys.c.workspace_id).where(
        api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None)
    )
    workspace_id: UUID | None = conn.execute(statement).scalar()
    return workspace_id
