"""A benchmark's own database (named by DATABASE_URL, which each bench sets before importing
the app): created and migrated if need be, and emptied of what an earlier run left."""

from __future__ import annotations

import sqlalchemy as sa

from app import db, schema
from app.settings import get_settings


def reset() -> None:
    schema.migrate(get_settings().database_url)
    with db.unit_of_work() as conn:
        conn.execute(
            sa.text(
                "TRUNCATE pipeline_executions, research_streams, api_keys, workspaces, limits"
                " CASCADE"
            )
        )
