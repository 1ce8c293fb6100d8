"""`runway`: operator commands (migrate, keys create, demo)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from app import demo, schema, workspaces
from app.settings import get_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="create the database if missing; alembic upgrade head")
    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="create a key (and the workspace if needed)")
    create.add_argument("--workspace", required=True)
    create.add_argument("--name", default="")
    commands.add_parser("demo", help="ensure the demo workspace, key and stream; print the key")
    args = parser.parse_args(argv)
    get_settings()  # settings that contradict each other stop every command here, in one line

    if args.command == "migrate":
        schema.migrate()
    elif args.command == "keys":
        print(workspaces.create_key(args.workspace, args.name)[1])
    else:
        demo.ensure()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
