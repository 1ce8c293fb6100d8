"""The migrations build exactly the schema the models describe, and run down and up again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app import db, schema
from app.models import metadata


def _differences(url: str) -> list[object]:
    engine = db.create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_upgrade_head_matches_models(database_url: str) -> None:
    assert _differences(database_url) == []


def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    db.dispose()
    config = schema.alembic_config(database_url)
    command.downgrade(config, "base")
    assert len(_differences(database_url)) > 0
    command.upgrade(config, "head")
    assert _differences(database_url) == []
