"""`runway`: the operator's commands. Each one parses its arguments, calls one service in
`app/` and prints the answer: a table, or JSON with `--json`. Exit status 0 on success; 1 with
one line on stderr naming the problem."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from app import demo, schema
from app.cli import keys, limits, output, runs, streams, workspaces
from app.cli.arguments import Parser, UsageError
from app.settings import get_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        return output.fail(str(error))
    get_settings()  # settings that contradict each other stop every command here, in one line
    try:
        args.action(args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # every failure is one line, never a traceback
        return output.fail(f"{args.where}: {output.explain(error)}")
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="runway", description=__doc__)
    commands = parser.add_subparsers(dest="noun", required=True, metavar="COMMAND")
    migrate = commands.add_parser(
        "migrate", help="create the database if missing; alembic upgrade head"
    )
    migrate.set_defaults(action=lambda _: schema.migrate(), where=migrate.prog)
    show_demo = commands.add_parser(
        "demo", help="ensure the demo workspace, key and stream; print the key"
    )
    show_demo.set_defaults(action=_demo, where=show_demo.prog)
    for module in (keys, workspaces, streams, runs, limits):
        module.register(commands)
    return parser


def _demo(_: argparse.Namespace) -> None:
    demo.ensure()


__all__ = ["main"]
