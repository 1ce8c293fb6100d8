"""The argument parser of `runway`, and the argument types its commands share."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn
from uuid import UUID

from app.jsonvalues import storable_json

Action = Callable[[argparse.Namespace], None]


class UsageError(Exception):
    """A command line `runway` cannot parse; the message is one line, prefixed by the command."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 1 like every other
    error (argparse prints the whole usage and exits 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def command(
    actions: argparse._SubParsersAction[Parser], name: str, action: Action, help: str
) -> Parser:
    """A leaf command: runs `action(args)`; every one takes `--json`."""
    parser = actions.add_parser(name, help=help, description=help)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(action=action, where=parser.prog)
    return parser


def noun(
    commands: argparse._SubParsersAction[Parser], name: str, help: str
) -> argparse._SubParsersAction[Parser]:
    parser = commands.add_parser(name, help=help, description=help)
    return parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")


def identifier(what: str) -> Callable[[str], UUID]:
    def parse(text: str) -> UUID:
        try:
            return UUID(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what} id (a UUID)") from None

    parse.__name__ = f"{what} id"
    return parse


def moment(text: str) -> datetime:
    """An ISO 8601 time with its UTC offset (`2026-03-29T00:00:00+01:00`, or `...Z`)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset (add Z or +01:00)")
    return value


def limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 1000")
    return int(text)


def cap(text: str) -> int | None:
    """A cap on concurrent runs: a whole number ≥ 1, or `none` for no cap."""
    if text.lower() == "none":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number ≥ 1, or none")
    return int(text)


def json_object(text: str) -> dict[str, Any]:
    """A JSON object that Postgres can store and the API can serve back."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, like '{\"seconds\": 5}'")
    problem = storable_json(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value
