"""`runway streams list|pause|resume|backfill`: the operator's view of a workspace's streams."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from app import workspaces
from app.cli import output
from app.cli.arguments import Parser, command, identifier, moment, noun
from app.schedules import backfill
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
    fill = command(actions, "backfill", _backfill, "a run for each past slot in [--from, --to)")
    fill.add_argument("stream_id", type=identifier("stream"), metavar="ID")
    fill.add_argument("--from", dest="start", type=moment, required=True, metavar="TIME")
    fill.add_argument("--to", dest="end", type=moment, required=True, metavar="TIME")
    fill.add_argument("--dry-run", action="store_true", help="list the slots; create nothing")


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


def _backfill(args: argparse.Namespace) -> None:
    workspace_id = service.workspace_of(args.stream_id)
    done = backfill.backfill(workspace_id, args.stream_id, args.start, args.end, args.dry_run)
    if args.json:
        output.show_one(
            {
                "slots": done.slots,
                "created": done.created,
                "existing": done.existing,
                "dry_run": done.dry_run,
            },
            True,
        )
        return
    verb = "would create" if done.dry_run else "created"
    rows = [{"slot": slot} for slot in done.slots]
    output.show_list(rows, [("SLOT", "slot")], False)
    print(f"{len(done.slots)} slot(s): {verb} {done.created} run(s), {done.existing} had one")


def view(stream: Stream) -> dict[str, Any]:
    fields = stream.row._mapping
    return {**{name: fields[name] for name in FIELDS}, "upcoming": stream.upcoming}
