"""What the run_tallies triggers cost the hot path: claim + final write, with and without.

    .venv/bin/python -m bench.tally_cost [--runs 2000] [--rounds 4]

Each round times N claim+finish pairs (the executor's own statements, store.claim and
store.finish, each one autocommit round trip) with the triggers enabled, then N with them
disabled, alternating so that drift hits both sides alike. Prints the median of a pair on
each side and their ratio. Uses a throwaway database `runway_bench_tally`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Iterator

os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/runway_bench_tally"
)

import sqlalchemy as sa

from app import db, schema
from app.runs import store
from app.runs.outcome import Outcome
from app.settings import get_settings

TRIGGERS = ("run_tallies_insert", "run_tallies_update", "run_tallies_delete")


def prepare() -> uuid.UUID:
    url = get_settings().database_url
    schema.ensure_database(url)
    schema.migrate(url)
    with db.unit_of_work() as conn:
        conn.execute(sa.text("TRUNCATE pipeline_executions, workspaces CASCADE"))
        return uuid.UUID(
            str(
                conn.execute(
                    sa.text("INSERT INTO workspaces (name) VALUES ('bench') RETURNING id")
                ).scalar()
            )
        )


def set_triggers(enabled: bool, triggers: tuple[str, ...] = TRIGGERS) -> None:
    verb = "ENABLE" if enabled else "DISABLE"
    with db.unit_of_work() as conn:
        for trigger in triggers:
            conn.execute(sa.text(f"ALTER TABLE pipeline_executions {verb} TRIGGER {trigger}"))


def pending_runs(workspace_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    with db.unit_of_work() as conn:
        rows = conn.execute(
            sa.text("""
            INSERT INTO pipeline_executions (workspace_id, stream_id, run_type, pipeline,
                                             max_attempts)
            SELECT :ws, gen_random_uuid(), 'manual', 'builtin.noop', 3
              FROM generate_series(1, :count) RETURNING id"""),
            {"ws": workspace_id, "count": count},
        )
        return [row[0] for row in rows]


def timed_pairs(run_ids: list[uuid.UUID]) -> Iterator[float]:
    """Seconds per claim + finish, one run after another on one connection."""
    done = Outcome.completed({"ok": True})
    with db.hot_connection() as conn:
        for run_id in run_ids:
            begun = time.perf_counter()
            claimed = store.claim(conn, run_id, "bench@host").claimed
            assert claimed is not None
            assert store.finish(conn, run_id, claimed.attempt, done) is not None
            yield time.perf_counter() - begun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    arguments = parser.parse_args()
    workspace_id = prepare()
    samples: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(arguments.rounds):
        for enabled in (True, False):
            runs = pending_runs(workspace_id, arguments.runs)  # inserted with triggers on
            set_triggers(enabled)
            samples[enabled].extend(timed_pairs(runs))
            set_triggers(True)
    with_, without = (statistics.median(samples[side]) * 1000 for side in (True, False))
    total = arguments.runs * arguments.rounds
    print(f"claim+finish, {total} pairs each side, median per pair:")
    print(f"  with tally triggers:    {with_:.3f} ms")
    print(f"  without tally triggers: {without:.3f} ms")
    print(f"  ratio: {with_ / without:.2f}")
    db.dispose()


if __name__ == "__main__":
    main()
