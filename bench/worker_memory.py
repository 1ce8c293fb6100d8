"""Resident memory of one worker across many runs: it must not grow with the runs executed.

    .venv/bin/python -m bench.worker_memory [--runs 100000] [--batch 10000]

One worker process (prefork, -c 2, the project's settings, as bench.throughput starts it)
drains `--runs` pending `builtin.noop` runs in batches of `--batch`; after each batch it
prints the resident set size (RSS) of the worker's pool processes and of the worker itself.
Uses the same throwaway database and queue names as bench.throughput.
"""

from __future__ import annotations

import argparse

import psutil
import redis

from bench import (
    database,
    throughput,  # first: it points the settings at the bench's database
)


def rss_mib(pid: int) -> tuple[float, list[float]]:
    """The worker's RSS and its pool processes' (MiB)."""
    worker = psutil.Process(pid)
    children = sorted(worker.children(), key=lambda child: child.pid)
    return _mib(worker), [_mib(child) for child in children]


def _mib(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()

    database.reset()
    client = redis.Redis.from_url(throughput.get_settings().redis_url)
    throughput.clear_queues(client)
    key = throughput.workspaces.create_key("bench")[1]
    with throughput.process(*throughput.worker_command()) as worker:
        with throughput.process(*throughput.api_command()):
            throughput.wait(throughput.worker_ready, 60, "the worker")
            throughput.wait(throughput._health_ok, 60, "the API")
            stream_id = throughput.make_stream(key)
        print("runs done   rate/s   worker MiB   pool processes MiB")
        parent, children = rss_mib(worker.pid)
        print(f"{0:9d}   {'':>6}   {parent:10.1f}   {_row(children)}", flush=True)
        done = 0
        while done < args.runs:
            batch = min(args.batch, args.runs - done)
            rate = batch / throughput.runway_phase(stream_id, batch, client)
            throughput.clear_runs()
            done += batch
            parent, children = rss_mib(worker.pid)
            print(f"{done:9d}   {rate:6.0f}   {parent:10.1f}   {_row(children)}", flush=True)


def _row(values: list[float]) -> str:
    return "  ".join(f"{value:7.1f}" for value in values)


if __name__ == "__main__":
    main()
