"""`runway keys create|list|revoke`: a workspace's API keys."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy.engine import Row

from app import workspaces
from app.cli import output
from app.cli.arguments import Parser, command, identifier, noun

COLUMNS: list[output.Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("CREATED", "created_at"),
    ("REVOKED", "revoked_at"),
]


def register(commands: argparse._SubParsersAction[Parser]) -> None:
    actions = noun(commands, "keys", "API keys")
    create = command(
        actions, "create", _create, "create a key (and the workspace if needed); print only the key"
    )
    create.add_argument("--workspace", required=True, metavar="NAME")
    create.add_argument("--name", default="", help="a label for people")
    listing = command(actions, "list", _list, "a workspace's keys (never the keys themselves)")
    listing.add_argument("--workspace", required=True, metavar="NAME")
    revoke = command(actions, "revoke", _revoke, "revoke a key: it answers 401 from now on")
    revoke.add_argument("key_id", type=identifier("key"), metavar="KEY_ID")


def _create(args: argparse.Namespace) -> None:
    issued = workspaces.issue_key(args.workspace, args.name)
    if args.json:
        output.show_one(
            {"id": issued.id, "workspace_id": issued.workspace_id, "key": issued.key}, True
        )
    else:
        print(issued.key)


def _list(args: argparse.Namespace) -> None:
    found = workspaces.list_keys(args.workspace)
    output.show_list([view(row) for row in found], COLUMNS, args.json)


def _revoke(args: argparse.Namespace) -> None:
    output.show_one(view(workspaces.revoke_key(args.key_id)), args.json)


def view(row: Row[Any]) -> dict[str, Any]:
    fields = row._mapping
    return {name: fields[name] for name in ("id", "name", "created_at", "revoked_at")}
