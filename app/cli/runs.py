"""`runway runs list|show|trigger|cancel|retry`: the HTTP API's run operations, straight on
the database. A run is published after its row is committed, as the API does. Commands that
take only an id act on the run whatever its workspace: an operator is not a tenant."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Row

from app import workspaces
from app.cli import output
from app.cli.arguments import Parser, command, identifier, json_object, limit, noun
from app.runs import service
from app.states import RunStatus, RunType
from app.streams import service as streams

FIELDS = (
    "id",
    "workspace_id",
    "stream_id",
    "run_type",
    "status",
    "attempt",
    "max_attempts",
    "params",
    "progress",
    "result",
    "error",
    "error_type",
    "cancel_requested",
    "scheduled_for",
    "created_at",
    "started_at",
    "completed_at",
    "retry_of",
    "priority",
    "limit_keys",
    "waiting_for",
)


def attempts(run: Mapping[str, Any]) -> str:
    return f"{run['attempt']}/{run['max_attempts']}"


COLUMNS: list[output.Column] = [
    ("ID", "id"),
    ("STREAM", "stream_id"),
    ("STATUS", "status"),
    ("TYPE", "run_type"),
    ("ATTEMPT", attempts),
    ("CREATED", "created_at"),
    ("COMPLETED", "completed_at"),
    ("ERROR", "error"),
]


def register(commands: argparse._SubParsersAction[Parser]) -> None:
    actions = noun(commands, "runs", "pipeline runs")
    listing = command(actions, "list", _list, "a workspace's runs, newest first")
    listing.add_argument("--workspace", required=True, metavar="NAME")
    listing.add_argument("--status", choices=[status.value for status in RunStatus])
    listing.add_argument("--stream", type=identifier("stream"), metavar="ID")
    listing.add_argument("--limit", type=limit, default=50, metavar="N", help="1-1000; 50")
    show = command(actions, "show", _show, "one run, every field")
    show.add_argument("run_id", type=identifier("run"), metavar="ID")
    trigger = command(actions, "trigger", _trigger, "run a stream now (a manual run)")
    trigger.add_argument("stream_id", type=identifier("stream"), metavar="STREAM_ID")
    trigger.add_argument(
        "--params", type=json_object, metavar="JSON", help="overlaid on the stream's params"
    )
    cancel = command(actions, "cancel", _cancel, "cancel a run (a running one is asked to stop)")
    cancel.add_argument("run_id", type=identifier("run"), metavar="ID")
    retry = command(actions, "retry", _retry, "run a failed or cancelled run again")
    retry.add_argument("run_id", type=identifier("run"), metavar="ID")


def _list(args: argparse.Namespace) -> None:
    wanted = {"status": args.status, "stream_id": args.stream}
    filters = {name: value for name, value in wanted.items() if value is not None}
    found = service.page(workspaces.lookup(args.workspace), filters, None, args.limit)
    output.show_list([view(row) for row in found.items], COLUMNS, args.json)


def _show(args: argparse.Namespace) -> None:
    output.show_one(view(service.locate(args.run_id)), args.json)


def _trigger(args: argparse.Namespace) -> None:
    workspace_id = streams.workspace_of(args.stream_id)
    made = service.create(workspace_id, args.stream_id, RunType.MANUAL, args.params)
    output.show_one(view(made.run), args.json)


def _cancel(args: argparse.Namespace) -> None:
    row = service.cancel(service.workspace_of(args.run_id), args.run_id)
    output.show_one(view(row), args.json)


def _retry(args: argparse.Namespace) -> None:
    row = service.retry(service.workspace_of(args.run_id), args.run_id)
    output.show_one(view(row), args.json)


def view(row: Row[Any]) -> dict[str, Any]:
    fields = {**row._mapping, "cancel_requested": row.cancel_requested_at is not None}
    return {name: fields[name] for name in FIELDS}
