"""The database's schema: create the database if missing and bring it to Alembic's head.

The migrations are installed beside this package (`migrations/`, next to `app/`), whether
the project is installed from a checkout in editable mode or as a wheel into any
environment, so `runway migrate` works from any directory. The Alembic configuration is
built here; `alembic.ini` serves only the `alembic` command in a checkout.
"""

from __future__ import annotations

import sys
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from app import db
from app.settings import get_settings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    if not (MIGRATIONS / "env.py").is_file():
        raise SystemExit(f"runway: migrations not found at {MIGRATIONS}: reinstall runway")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
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
