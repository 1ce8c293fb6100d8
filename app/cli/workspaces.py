"""`runway workspaces list|set`: tenants, their live runs, and their cap on running runs."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy.engine import Row

from app import workspaces
from app.cli import output
from app.cli.arguments import Parser, cap, command, noun

FIELDS = ("id", "name", "created_at", "max_concurrent_runs")
LIVE = ("pending", "running", "retrying")
COLUMNS: list[output.Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("MAX CONCURRENT", "max_concurrent_runs"),
    ("PENDING", "pending"),
    ("RUNNING", "running"),
    ("RETRYING", "retrying"),
    ("CREATED", "created_at"),
]


def register(commands: argparse._SubParsersAction[Parser]) -> None:
    actions = noun(commands, "workspaces", "workspaces (tenants)")
    command(
        actions, "list", _list, "every workspace, with its live (pending, running, retrying) runs"
    )
    change = command(actions, "set", _set, "change a workspace's settings")
    change.add_argument("name", metavar="NAME")
    change.add_argument(
        "--max-concurrent",
        type=cap,
        required=True,
        metavar="N|none",
        help="how many of its runs may run at once; none: no cap",
    )


def _list(args: argparse.Namespace) -> None:
    found = workspaces.list_workspaces()
    output.show_list([view(row, LIVE) for row in found], COLUMNS, args.json)


def _set(args: argparse.Namespace) -> None:
    output.show_one(view(workspaces.set_max_concurrent(args.name, args.max_concurrent)), args.json)


def view(row: Row[Any], counts: tuple[str, ...] = ()) -> dict[str, Any]:
    fields = row._mapping
    return {name: fields[name] for name in (*FIELDS, *counts)}
