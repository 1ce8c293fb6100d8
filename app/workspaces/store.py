"""Every SQL statement about workspaces and api_keys; never commits."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Row

from app import db
from app.models import api_keys, pipeline_executions, workspaces
from app.states import LIVE, RunStatus

KEY_PREFIX = "rw_"
# What a key looks like to an operator: never the key, never its hash.
KEY_COLUMNS: tuple[sa.Column[Any], ...] = (
    api_keys.c.id,
    api_keys.c.workspace_id,
    api_keys.c.name,
    api_keys.c.created_at,
    api_keys.c.revoked_at,
)
WORKSPACE_COLUMNS: tuple[sa.Column[Any], ...] = (
    workspaces.c.id,
    workspaces.c.name,
    workspaces.c.created_at,
    workspaces.c.max_concurrent_runs,
)


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


def find(conn: Connection, name: str) -> Row[Any] | None:
    statement = sa.select(*WORKSPACE_COLUMNS).where(workspaces.c.name == name)
    return conn.execute(statement).first()


def insert_key(conn: Connection, workspace_id: UUID, key: str, name: str) -> UUID:
    statement = (
        sa.insert(api_keys)
        .values(workspace_id=workspace_id, key_hash=hash_key(key), name=name)
        .returning(api_keys.c.id)
    )
    key_id: UUID = conn.execute(statement).scalar_one()
    return key_id


# Built once: every request but /health runs it.
_WORKSPACE_FOR_KEY = sa.select(api_keys.c.workspace_id).where(
    api_keys.c.key_hash == sa.bindparam("key_hash"), api_keys.c.revoked_at.is_(None)
)


_WORKSPACE_FOR_KEY_SQL = db.psycopg_sql(_WORKSPACE_FOR_KEY)
# The workspace of the holder of a live key, as an expression of `%(key_hash)s` for a
# statement that acts for that holder and checks the key itself: no round trip of its own.
KEY_HOLDER_SQL = f"({_WORKSPACE_FOR_KEY_SQL})"


def workspace_for_key(conn: Connection, key: str) -> UUID | None:
    found = conn.execute(_WORKSPACE_FOR_KEY, {"key_hash": hash_key(key)})
    workspace_id: UUID | None = found.scalar()
    return workspace_id


async def workspace_for_key_async(conn: db.AsyncConnection, key: str) -> UUID | None:
    found = await conn.execute(_WORKSPACE_FOR_KEY_SQL, {"key_hash": hash_key(key)})
    row = await found.fetchone()
    workspace_id: UUID | None = None if row is None else row.workspace_id
    return workspace_id


def live_key(conn: Connection, key: str) -> Row[Any] | None:
    """The key's `id` and `workspace_id`, unless it is unknown or revoked."""
    statement = sa.select(*KEY_COLUMNS[:2]).where(
        api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None)
    )
    return conn.execute(statement).first()


def live_key_workspace(conn: Connection, key_id: UUID, workspace_id: UUID) -> str | None:
    """The name of the workspace, while the key with this id is its and not revoked."""
    statement = (
        sa.select(workspaces.c.name)
        .select_from(api_keys.join(workspaces, workspaces.c.id == api_keys.c.workspace_id))
        .where(
            api_keys.c.id == key_id,
            api_keys.c.workspace_id == workspace_id,
            api_keys.c.revoked_at.is_(None),
        )
    )
    name: str | None = conn.execute(statement).scalar()
    return name


def keys_of(conn: Connection, workspace_id: UUID) -> Sequence[Row[Any]]:
    statement = (
        sa.select(*KEY_COLUMNS)
        .where(api_keys.c.workspace_id == workspace_id)
        .order_by(api_keys.c.created_at, api_keys.c.id)
    )
    return conn.execute(statement).all()


def revoke_key(conn: Connection, key_id: UUID) -> Row[Any] | None:
    """Revoke a key; a key revoked before keeps the time it was revoked first."""
    statement = (
        sa.update(api_keys)
        .where(api_keys.c.id == key_id)
        .values(revoked_at=sa.func.coalesce(api_keys.c.revoked_at, sa.func.now()))
        .returning(*KEY_COLUMNS)
    )
    return conn.execute(statement).first()


def with_live_counts(conn: Connection) -> Sequence[Row[Any]]:
    """Every workspace with how many of its runs are pending, running and retrying. Only live
    runs are counted (the partial index on them keeps this cheap however many ended runs are
    stored)."""
    runs = pipeline_executions
    counts = [
        sa.func.count(runs.c.id).filter(runs.c.status == status).label(status.value)
        for status in (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.RETRYING)
    ]
    live = sa.and_(runs.c.workspace_id == workspaces.c.id, runs.c.status.in_(LIVE))
    statement = (
        sa.select(*WORKSPACE_COLUMNS, *counts)
        .select_from(workspaces.outerjoin(runs, live))
        .group_by(workspaces.c.id)
        .order_by(workspaces.c.name)
    )
    return conn.execute(statement).all()


def set_max_concurrent(conn: Connection, name: str, value: int | None) -> Row[Any] | None:
    statement = (
        sa.update(workspaces)
        .where(workspaces.c.name == name)
        .values(max_concurrent_runs=value)
        .returning(*WORKSPACE_COLUMNS)
    )
    return conn.execute(statement).first()
