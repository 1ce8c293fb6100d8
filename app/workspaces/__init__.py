"""Workspaces (tenants) and their API keys. Keys are random tokens; only their SHA-256 is
stored. `store` holds the SQL of both tables; `service` the operations, one transaction each."""

from __future__ import annotations

from app.workspaces.service import (
    IssuedKey,
    create_key,
    issue_key,
    list_keys,
    list_workspaces,
    lookup,
    revoke_key,
    set_max_concurrent,
)
from app.workspaces.store import (
    KEY_PREFIX,
    ensure_workspace,
    hash_key,
    workspace_for_key,
    workspace_for_key_async,
)

__all__ = [
    "KEY_PREFIX",
    "IssuedKey",
    "create_key",
    "ensure_workspace",
    "hash_key",
    "issue_key",
    "list_keys",
    "list_workspaces",
    "lookup",
    "revoke_key",
    "set_max_concurrent",
    "workspace_for_key",
    "workspace_for_key_async",
]
