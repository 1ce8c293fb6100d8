"""`runway`: operator commands (migrate, keys create, demo)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from app import db, demo, workspaces
from app.settings import get_settings

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


def alembic_config(url: str) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.attributes["database_url"] = url
    return config


def ensure_database(url: str) -> bool:
    """Create the database named in `url` if it does not exist; True if it was created."""
    target = make_url(url)
    admin = db.create_engine(target.set(database="postgres").render_as_string(hide_password=False))
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": target.database},
            ).scalar()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
            return not exists
    finally:
        admin.dispose()


def migrate(url: str | None = None) -> None:
    url = url or get_settings().database_url
    if ensure_database(url):
        print(f"created database {make_url(url).database}", file=sys.stderr)
    command.upgrade(alembic_config(url), "head")


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
        migrate()
    elif args.command == "keys":
        print(workspaces.create_key(args.workspace, args.name)[1])
    else:
        demo.ensure()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
