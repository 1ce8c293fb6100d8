"""What the console shows beyond the API's own services: who is signed in, the overview, and
each stream's strip of recent runs. One transaction per call."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy.engine import Row

from app import db, monitoring
from app.console import store
from app.settings import get_settings
from app.workspaces import store as workspaces_store

STRIP_LENGTH = 30
LISTED = 10  # rows in each list of the overview
TROUBLE_WINDOW = timedelta(hours=24)

_secret_lock = threading.Lock()
_secrets: dict[str, str] = {}  # database URL -> its stored secret


@dataclass(frozen=True)
class SignedIn:
    key_id: UUID
    workspace_id: UUID


@dataclass(frozen=True)
class Overview:
    counts: dict[str, int]  # every status; pending and retrying without the waiting ones
    waiting: int  # held back by flow control
    running: Sequence[Row[Any]]
    failing: Sequence[Row[Any]]
    paused: Sequence[Row[Any]]
    upcoming: Sequence[Row[Any]]
    trouble: Sequence[Row[Any]]  # slots missed or skipped in the last day
    overdue: Sequence[Row[Any]]  # scheduled runs past their slot, not started yet
    names: dict[UUID, str]  # the names of the streams these rows name


def signing_secret() -> str:
    """RUNWAY_UI_SECRET, or the secret stored in Postgres (made by the first process that
    asks), so that every API process and every restart signs alike."""
    configured = get_settings().ui_secret
    if configured is not None:
        return configured.get_secret_value()
    url = get_settings().database_url
    with _secret_lock:
        if url not in _secrets:
            with db.unit_of_work() as conn:
                _secrets[url] = store.secret(conn, secrets.token_urlsafe(48))
        return _secrets[url]


def sign_in(key: str) -> SignedIn | None:
    """The key's identity, or None for a key that is unknown or revoked."""
    with db.unit_of_work() as conn:
        row = workspaces_store.live_key(conn, key.strip())
    return None if row is None else SignedIn(row.id, row.workspace_id)


def workspace_name(signed_in: SignedIn) -> str | None:
    """The workspace's name while the session's key is live; None once it is revoked."""
    with db.unit_of_work() as conn:
        return workspaces_store.live_key_workspace(conn, signed_in.key_id, signed_in.workspace_id)


def overview(workspace_id: UUID) -> Overview:
    status = monitoring.status(workspace_id)
    now = datetime.now(UTC)
    late = now - timedelta(seconds=get_settings().misfire_grace_seconds)
    with db.unit_of_work() as conn:
        running = store.running(conn, workspace_id, LISTED)
        trouble = store.trouble(conn, workspace_id, now - TROUBLE_WINDOW, LISTED)
        overdue = store.overdue(conn, workspace_id, late, LISTED)
        named = [row.stream_id for row in (*running, *overdue)]
        found = Overview(
            counts={
                name: count - status.waiting.get(name, 0) for name, count in status.counts.items()
            },
            waiting=sum(status.waiting.values()),
            running=running,
            failing=store.failing(conn, workspace_id, now - TROUBLE_WINDOW, LISTED),
            paused=store.paused(conn, workspace_id, LISTED),
            upcoming=store.next_scheduled(conn, workspace_id, LISTED),
            trouble=trouble,
            overdue=overdue,
            names=store.stream_names(conn, workspace_id, named),
        )
    return found


def running(workspace_id: UUID) -> tuple[Sequence[Row[Any]], dict[UUID, str]]:
    """The runs in flight (the overview's live part), with their streams' names."""
    with db.unit_of_work() as conn:
        rows = store.running(conn, workspace_id, LISTED)
        return rows, store.stream_names(conn, workspace_id, [row.stream_id for row in rows])


def strips(stream_ids: Sequence[UUID]) -> dict[UUID, list[Row[Any]]]:
    """Each stream's last STRIP_LENGTH runs, oldest first (the ids are the caller's own)."""
    with db.unit_of_work() as conn:
        return store.strips(conn, stream_ids, STRIP_LENGTH)


def stream_names(workspace_id: UUID, stream_ids: Sequence[UUID]) -> dict[UUID, str]:
    with db.unit_of_work() as conn:
        return store.stream_names(conn, workspace_id, stream_ids)
