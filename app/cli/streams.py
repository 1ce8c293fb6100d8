"""`runway streams list|pause|resume`: the operator's view of a workspace's streams."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from app import workspaces
from app.cli import output
from app.cli.arguments import Parser, command, identifier, noun
from app.streams import service
from app.streams.service import Stream

PAGE = 500
FIELDS = (
    "id",
    "workspace_id",
    "name",
    "pipeline",
    "params",
    "schedule_config",
    "next_scheduled_run",
    "last_scheduled_run",
    "paused_reason",
    "priority",
    "limit_keys",
    "created_at",
    "updated_at",
)


def schedule(stream: Mapping[str, Any]) -> str | None:
    config = stream["schedule_config"]
    if config is None:
        return None
    when = config["cron"] or f"every {config['interval_seconds']}s"
    return f"{when} ({config['timezone']})"


def state(stream: Mapping[str, Any]) -> str:
    config = stream["schedule_config"]
    if config is None:
        return "on demand"
    return "active" if config["enabled"] else "paused"


COLUMNS: list[output.Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("PIPELINE", "pipeline"),
    ("SCHEDULE", schedule),
    ("STATE", state),
    ("NEXT RUN", "next_scheduled_run"),
    ("PAUSED REASON", "paused_reason"),
]


def register(commands: argparse._SubParsersAction[Parser]) -> None:
    actions = noun(commands, "streams", "research streams")
    listing = command(actions, "list", _list, "a workspace's streams and their schedules")
    listing.add_argument("--workspace", required=True, metavar="NAME")
    pause = command(actions, "pause", _pause, "stop a stream's schedule firing (enabled: false)")
    pause.add_argument("stream_id", type=identifier("stream"), metavar="ID")
    resume = command(actions, "resume", _resume, "let a paused stream fire again (enabled: true)")
    resume.add_argument("stream_id", type=identifier("stream"), metavar="ID")


def _list(args: argparse.Namespace) -> None:
    workspace_id = workspaces.lookup(args.workspace)
    found: list[Stream] = []
    while len(batch := service.list_all(workspace_id, PAGE, len(found))) > 0:
        found += batch
        if len(batch) < PAGE:
            break
    output.show_list([view(stream) for stream in found], COLUMNS, args.json)


def _pause(args: argparse.Namespace) -> None:
    output.show_one(view(service.set_enabled(args.stream_id, False)), args.json)


def _resume(args: argparse.Namespace) -> None:
    output.show_one(view(service.set_enabled(args.stream_id, True)), args.json)


def view(stream: Stream) -> dict[str, Any]:
    fields = stream.row._mapping
    return {**{name: fields[name] for name in FIELDS}, "upcoming": stream.upcoming}
