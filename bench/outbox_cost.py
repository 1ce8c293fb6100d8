"""What the webhook outbox trigger costs the hot path: claim + final write, four ways.

    .venv/bin/python -m bench.outbox_cost [--runs 2000] [--rounds 4]

Sides, alternating within each round so that drift hits them alike, N claim+finish pairs each
(the executor's own statements, one autocommit round trip each; tally triggers on throughout):
  off:         the `webhook_run_events` trigger disabled (what the hot path cost before it);
  no webhooks: enabled, no webhook anywhere (the trigger looks at an empty table);
  elsewhere:   enabled, another workspace has a webhook (the trigger joins, writes nothing);
  subscribed:  enabled, this workspace has a webhook for run.completed (one outbox row per run).
Prints the median per pair of each side and its ratio to `off`. Uses `runway_bench_tally`.
"""

from __future__ import annotations

import argparse
import statistics
import uuid

import sqlalchemy as sa

from app import db
from bench.tally_cost import pending_runs, prepare, set_triggers, timed_pairs

OUTBOX = ("webhook_run_events",)
SIDES = ("off", "no webhooks", "elsewhere", "subscribed")


def set_side(side: str, workspace_id: uuid.UUID, other_id: uuid.UUID) -> None:
    set_triggers(side != "off", OUTBOX)
    owner = {"elsewhere": other_id, "subscribed": workspace_id}.get(side)
    with db.unit_of_work() as conn:
        conn.execute(sa.text("DELETE FROM webhooks"))
        if owner is not None:
            conn.execute(
                sa.text("""INSERT INTO webhooks (workspace_id, url, events, secret)
                           VALUES (:ws, 'http://bench.invalid/', '{run.completed}', 's')"""),
                {"ws": owner},
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    arguments = parser.parse_args()
    workspace_id = prepare()
    with db.unit_of_work() as conn:
        other_id = conn.execute(
            sa.text("INSERT INTO workspaces (name) VALUES ('bench-other') RETURNING id")
        ).scalar_one()
    samples: dict[str, list[float]] = {side: [] for side in SIDES}
    for _ in range(arguments.rounds):
        for side in SIDES:
            runs = pending_runs(workspace_id, arguments.runs)
            set_side(side, workspace_id, other_id)
            samples[side].extend(timed_pairs(runs))
    set_side("no webhooks", workspace_id, other_id)
    medians = {side: statistics.median(samples[side]) * 1000 for side in SIDES}
    total = arguments.runs * arguments.rounds
    print(f"claim+finish, {total} pairs each side, median per pair:")
    for side in SIDES:
        print(f"  {side:12} {medians[side]:.3f} ms  ({medians[side] / medians['off']:.2f}x off)")
    db.dispose()


if __name__ == "__main__":
    main()
