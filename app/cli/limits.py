"""`runway limits list|set|delete`: a workspace's limit keys, as `PUT /limits/{key}` sets them."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any
from uuid import UUID

from app import workspaces
from app.cli import output
from app.cli.arguments import Parser, command, noun
from app.errors import NotFound, RunwayError
from app.limits import service
from app.limits.service import MAX_CONCURRENT, MAX_RATE_COUNT, MAX_RATE_PERIOD_SECONDS, Rate

KEEP = object()  # an option left out: the key keeps what it had


def rate_text(limit: Mapping[str, Any]) -> str | None:
    rate = limit["rate"]
    return None if rate is None else f"{rate['count']}/{rate['period_seconds']:g}s"


COLUMNS: list[output.Column] = [
    ("KEY", "key"),
    ("MAX CONCURRENT", "max_concurrent"),
    ("RATE", rate_text),
    ("RUNNING", "running"),
    ("WAITING", "waiting"),
]


def max_concurrent(text: str) -> int | None:
    """How many runs of a key may run at once: 1 to MAX_CONCURRENT, or `none`."""
    if text.lower() == "none":
        return None
    if not text.isdigit() or not 1 <= int(text) <= MAX_CONCURRENT:
        raise argparse.ArgumentTypeError(
            f"{text!r} must be a whole number from 1 to {MAX_CONCURRENT}, or none"
        )
    return int(text)


def rate(text: str) -> Rate | None:
    """`COUNT/SECONDS` (`60/60`: 60 starts a minute), or `none`."""
    if text.lower() == "none":
        return None
    count, _, seconds = text.partition("/")
    problem = argparse.ArgumentTypeError(
        f"{text!r} must be COUNT/SECONDS (like 60/60): COUNT a whole number from 1 to "
        f"{MAX_RATE_COUNT}, SECONDS more than 0 and at most {MAX_RATE_PERIOD_SECONDS}; or none"
    )
    try:
        period = float(seconds)
    except ValueError:
        raise problem from None
    if not count.isdigit() or not 1 <= int(count) <= MAX_RATE_COUNT:
        raise problem
    if not (math.isfinite(period) and 0 < period <= MAX_RATE_PERIOD_SECONDS):
        raise problem
    return Rate(int(count), period)


def register(commands: argparse._SubParsersAction[Parser]) -> None:
    actions = noun(commands, "limits", "limit keys: caps on running runs and on starts per period")
    listing = command(actions, "list", _list, "a workspace's limit keys, with their runs")
    listing.add_argument("--workspace", required=True, metavar="NAME")
    change = command(actions, "set", _set, "set a key's limit; an option left out keeps its value")
    change.add_argument("key", metavar="KEY")
    change.add_argument("--workspace", required=True, metavar="NAME")
    change.add_argument(
        "--max-concurrent",
        type=max_concurrent,
        default=KEEP,
        metavar="N|none",
        help="how many runs naming the key may run at once; none: no cap",
    )
    change.add_argument(
        "--rate",
        type=rate,
        default=KEEP,
        metavar="COUNT/SECONDS|none",
        help="how many runs naming the key may start per period (60/60: 60 a minute); none",
    )
    remove = command(actions, "delete", _delete, "remove a key's limit: its runs may start")
    remove.add_argument("key", metavar="KEY")
    remove.add_argument("--workspace", required=True, metavar="NAME")


def _list(args: argparse.Namespace) -> None:
    found = service.list_all(workspaces.lookup(args.workspace))
    output.show_list([view(limit) for limit in found], COLUMNS, args.json)


def _set(args: argparse.Namespace) -> None:
    if args.max_concurrent is KEEP and args.rate is KEEP:
        raise RunwayError("give --max-concurrent N|none, --rate COUNT/SECONDS|none, or both")
    workspace_id = workspaces.lookup(args.workspace)
    service.check_key(args.key, field="KEY", location="argument")
    current = _current(workspace_id, args.key)
    cap = current.max_concurrent if args.max_concurrent is KEEP else args.max_concurrent
    per = current.rate if args.rate is KEEP else args.rate
    output.show_one(view(service.put(workspace_id, args.key, cap, per)), args.json)


def _delete(args: argparse.Namespace) -> None:
    service.delete(workspaces.lookup(args.workspace), args.key)
    output.show_one({"key": args.key, "deleted": True}, args.json)


def _current(workspace_id: UUID, key: str) -> service.Limit:
    try:
        return service.get(workspace_id, key)
    except NotFound:
        return service.Limit(key, None, None, 0, 0)


def view(limit: service.Limit) -> dict[str, Any]:
    return {**asdict(limit), "rate": None if limit.rate is None else asdict(limit.rate)}
