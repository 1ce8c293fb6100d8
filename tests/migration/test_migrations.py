"""The migrations build exactly the schema the models describe, and run down and up again."""

from __future__ import annotations

import sqlalchemy as sa
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


_COUNT_TALLIES = """
SELECT status, count(*)::float8 FROM pipeline_executions GROUP BY status
EXCEPT
SELECT substr(name, 6), sum(value) FROM run_tallies WHERE name LIKE 'runs:%' GROUP BY name"""


def test_upgrade_counts_the_runs_already_stored(database_url: str) -> None:
    db.dispose()
    config = schema.alembic_config(database_url)
    command.downgrade(config, "0004")
    engine = db.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO workspaces (name) VALUES ('old')"))
            conn.execute(
                sa.text("""
                INSERT INTO pipeline_executions (workspace_id, stream_id, run_type, pipeline,
                    max_attempts, status, started_at, completed_at)
                SELECT (SELECT id FROM workspaces), gen_random_uuid(), 'manual', 'p', 3,
                       (ARRAY['pending', 'completed', 'failed'])[1 + g % 3],
                       now() - interval '1 minute', now()
                  FROM generate_series(1, 300) g""")
            )
        command.upgrade(config, "head")
        with engine.begin() as conn:
            assert conn.execute(sa.text(_COUNT_TALLIES)).all() == []
            durations = conn.execute(
                sa.text("SELECT sum(value) FROM run_tallies WHERE name LIKE 'run_duration%:le:%'")
            ).scalar()
        assert durations == 100  # the completed ones
    finally:
        engine.dispose()
