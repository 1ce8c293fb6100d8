"""The HTTP API against its floor: `POST /runs` and `GET /runs/{id}` under wrk.

    .venv/bin/python -m bench.api [--connections 16] [--seconds 10] [--api-workers N]
                                  [--rounds 3]

Runs Debian's `wrk` (installed with apt-get when missing) with the same connections and
duration against:
  1. Runway's API: `uvicorn api.main:app` with the Procfile's options and `--api-workers`
     processes (default: one per core), a workspace, API key and stream made beforehand;
     `POST /runs` (a manual run, no Idempotency-Key), then `GET /runs/{id}` of one run.
  2. The floor, bench/floor_api.py: a bare FastAPI app under the same server command and
     worker count, doing the same SQL and LPUSH (of a message as large as Runway's).
Each measurement follows a warm-up; the runs table and the queue are emptied between them
(no worker runs: the queue only fills). Runway and the floor take turns, `--rounds` times
each (this machine is noisy). Prints, as medians over the rounds, requests/s, p50 and p99
latency, the CPU of the API processes and of Postgres per request, then the ratios Runway /
floor (of the medians, and each round's). Then, through a
proxy that counts them, the round trips to Postgres and Redis of one request of each kind
(one API process, sequential requests).

Uses a throwaway database `runway_bench_api` (BENCH_API_DATABASE_URL), Redis db 10
(BENCH_API_REDIS_URL) and its own queue prefix.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

PREFIX = "bench-api"
os.environ["RUNWAY_QUEUE_PREFIX"] = PREFIX
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_API_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/runway_bench_api"
)
os.environ["REDIS_URL"] = os.environ.get("BENCH_API_REDIS_URL", "redis://127.0.0.1:6379/10")

import httpx  # noqa: E402
import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from app import db, workspaces  # noqa: E402
from app.runs import dispatch  # noqa: E402
from app.settings import get_settings  # noqa: E402
from bench import database  # noqa: E402
from bench.proc import cpu_seconds, stop, tree  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PORT = 8766
FLOOR_QUEUE = f"{PREFIX}.floor"
WARM_UP_SECONDS = 3
ROUND_TRIP_REQUESTS = 100

WRK_SCRIPT = """
wrk.method = "{method}"
wrk.path = "{path}"
wrk.body = '{body}'
wrk.headers["Authorization"] = "Bearer {key}"
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{{"requests": %d, "seconds": %.3f, "p50": %.3f, "p99": %.3f, "status": %d, "errors": %d}}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(frozen=True)
class Result:
    rate: float
    p50: float
    p99: float
    api_cpu_ms: float
    postgres_cpu_ms: float
    errors: int  # socket errors and timeouts (wrk's: 2 s)


def ensure_wrk() -> str:
    """wrk's path; installs Debian's package first when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for arguments in (["update"], ["install", "-y", "--no-install-recommends", "wrk"]):
            subprocess.run(["apt-get", *arguments], check=True, capture_output=True, env=env)
    except (OSError, subprocess.CalledProcessError) as error:
        sys.exit(f"bench: wrk missing; `apt-get install -y wrk` failed: {error}")
    return shutil.which("wrk") or sys.exit("bench: wrk missing; apt-get did not provide it")


def server_command(target: str, workers: int) -> list[str]:
    """The Procfile's API command, serving `target` on PORT with `workers` processes."""
    line = next(
        line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("api:")
    )
    words = shlex.split(line.removeprefix("api:"))
    program, options = words[0], words[1:]
    command = [str(ROOT / program) if program.startswith(".venv") else program]
    skip = False
    for word in options:
        if skip:
            skip = False
        elif word in ("--host", "--port", "--workers", "--bind", "-b", "-w"):
            skip = True
        elif word == "api.main:app":
            command.append(target)
        else:
            command.append(word)
    if "gunicorn" in Path(program).name:
        return [*command, "--bind", f"127.0.0.1:{PORT}", "--workers", str(workers)]
    return [*command, "--host", "127.0.0.1", "--port", str(PORT), "--workers", str(workers)]


@contextmanager
def server(target: str, workers: int, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    command = server_command(target, workers)
    child = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait(lambda: _answers(child), 60, f"{target} to serve")
        yield child
    finally:
        stop(child)


def _answers(child: subprocess.Popen[bytes]) -> bool:
    if child.poll() is not None:
        sys.exit(f"bench: the server exited with {child.returncode}")
    try:
        httpx.get(f"http://127.0.0.1:{PORT}/runs/{'0' * 32}", timeout=1)
    except httpx.HTTPError:
        return False
    return True


def wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"bench: timed out waiting for {what}")
        time.sleep(0.1)


def wrk(binary: str, args: argparse.Namespace, script: str, seconds: float) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        command = [binary, "-t", "1", "-c", str(args.connections), "-d", f"{seconds:g}s"]
        output = subprocess.run(
            [*command, "-s", lua.name, f"http://127.0.0.1:{PORT}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    found: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    if found["status"]:
        sys.exit(f"bench: {found['status']:.0f} answers were not 2xx:\n{output}")
    return found


def measure(binary: str, args: argparse.Namespace, script: str, api_pid: int) -> Result:
    wrk(binary, args, script, WARM_UP_SECONDS)
    api, postgres = tree(api_pid), postgres_pids()
    before = cpu_seconds(api), cpu_seconds(postgres)
    found = wrk(binary, args, script, args.seconds)
    api_cpu = cpu_seconds(api) - before[0]
    postgres_cpu = cpu_seconds(postgres | postgres_pids()) - before[1]
    requests = found["requests"]
    return Result(
        rate=requests / found["seconds"],
        p50=found["p50"],
        p99=found["p99"],
        api_cpu_ms=api_cpu * 1000 / requests,
        postgres_cpu_ms=postgres_cpu * 1000 / requests,
        errors=int(found["errors"]),
    )


def post_script(key: str, stream_id: str) -> str:
    body = json.dumps({"stream_id": stream_id, "run_type": "manual"})
    return WRK_SCRIPT.format(method="POST", path="/runs", body=body, key=key)


def get_script(key: str, run_id: str) -> str:
    return WRK_SCRIPT.format(method="GET", path=f"/runs/{run_id}", body="", key=key)


def one_run(key: str, stream_id: str) -> str:
    answer = httpx.post(
        f"http://127.0.0.1:{PORT}/runs", json={"stream_id": stream_id}, headers=auth(key)
    )
    run_id: str = answer.raise_for_status().json()["id"]
    return run_id


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def clear(client: redis.Redis) -> None:
    with db.unit_of_work() as conn:
        conn.execute(sa.text("TRUNCATE pipeline_executions"))
    client.delete(*dispatch.queue_lists(get_settings().runs_queue), FLOOR_QUEUE)


def message_bytes(client: redis.Redis) -> int:
    """The size of one message Runway published; 0 if none (the floor's queue is its own)."""
    for name in dispatch.queue_lists(get_settings().runs_queue):
        message = client.lindex(name, 0)
        if message is not None:
            return len(message)
    return 0


def both(
    binary: str, args: argparse.Namespace, target: str, env: dict[str, str], key: str, stream: str
) -> tuple[Result, Result, int]:
    """POST, then GET; and the size of a message the POSTs left in Runway's queue (or 0)."""
    client = redis.Redis.from_url(get_settings().redis_url)
    clear(client)
    with server(target, args.api_workers, env) as child:
        posted = measure(binary, args, post_script(key, stream), child.pid)
        size = message_bytes(client)
        clear(client)
        got = measure(binary, args, get_script(key, one_run(key, stream)), child.pid)
        clear(client)
    return posted, got, size


def make_stream(key: str) -> str:
    with server("api.main:app", 1, {}):
        body = {"name": "bench", "pipeline": "builtin.noop"}
        answer = httpx.post(f"http://127.0.0.1:{PORT}/streams", json=body, headers=auth(key))
        stream_id: str = answer.raise_for_status().json()["id"]
    return stream_id


class RoundTrips:
    """A TCP relay to a server that counts round trips: each time a client speaks again
    after the server answered (or first) is one."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 0)
        self.count = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{self.port}")
        threading.Thread(target=self._accept, daemon=True).start()

    def take(self) -> int:
        with self._lock:
            count, self.count = self.count, 0
        return count

    def _accept(self) -> None:
        while True:
            client, _ = self._listener.accept()
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream)
        client_spoke = False
        with client, upstream:
            while True:
                for sock in select.select([client, upstream], [], [])[0]:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client and not client_spoke:
                        with self._lock:
                            self.count += 1
                    client_spoke = sock is client
                    (upstream if sock is client else client).sendall(data)


def round_trips(target: str, env: dict[str, str], key: str, stream: str) -> dict[str, float]:
    """Postgres and Redis round trips per request, one API process, sequential requests."""
    postgres = RoundTrips(get_settings().database_url)
    broker = RoundTrips(get_settings().redis_url)
    env = {**env, "DATABASE_URL": postgres.url, "REDIS_URL": broker.url}
    found: dict[str, float] = {}
    with server(target, 1, env), httpx.Client(base_url=f"http://127.0.0.1:{PORT}") as client:
        run_id = one_run(key, stream)
        requests: dict[str, Callable[[], httpx.Response]] = {
            "POST": lambda: client.post("/runs", json={"stream_id": stream}, headers=auth(key)),
            "GET": lambda: client.get(f"/runs/{run_id}", headers=auth(key)),
        }
        for name, request in requests.items():
            for _ in range(20):  # warm-up: the pools open their connections
                request().raise_for_status()
            postgres.take(), broker.take()
            for _ in range(ROUND_TRIP_REQUESTS):
                request().raise_for_status()
            found[f"{name} postgres"] = postgres.take() / ROUND_TRIP_REQUESTS
            found[f"{name} redis"] = broker.take() / ROUND_TRIP_REQUESTS
    clear(redis.Redis.from_url(get_settings().redis_url))
    return found


def postgres_pids() -> set[int]:
    """The Postgres backends serving the bench's database (not other databases' clients)."""
    title = f" {make_url(get_settings().database_url).database} ".encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if title in (entry / "cmdline").read_bytes():
                    pids.add(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return pids


def median_result(results: list[Result]) -> Result:
    return Result(
        rate=statistics.median(found.rate for found in results),
        p50=statistics.median(found.p50 for found in results),
        p99=statistics.median(found.p99 for found in results),
        api_cpu_ms=statistics.median(found.api_cpu_ms for found in results),
        postgres_cpu_ms=statistics.median(found.postgres_cpu_ms for found in results),
        errors=sum(found.errors for found in results),
    )


def report(
    args: argparse.Namespace, runway: list[tuple[Result, ...]], floor: list[tuple[Result, ...]]
) -> None:
    print(
        f"wrk: {args.connections} connections, {args.seconds:g} s after a {WARM_UP_SECONDS} s "
        f"warm-up, {args.rounds} rounds each, taking turns; "
        f"server: {shlex.join(server_command('APP', args.api_workers))}"
    )
    print("medians over the rounds:")
    print(
        f"{'':24}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'API CPU':>10}{'PG CPU':>9}{'errors':>8}"
        "  (CPU: ms a request)"
    )
    for index, endpoint in enumerate(("POST /runs", "GET /runs/{id}")):
        ours = median_result([round_[index] for round_ in runway])
        bare = median_result([round_[index] for round_ in floor])
        for name, found in (("Runway", ours), ("floor", bare)):
            print(
                f"{endpoint:15}{name:9}{found.rate:8.0f}{found.p50:9.1f}{found.p99:9.1f}"
                f"{found.api_cpu_ms:10.2f}{found.postgres_cpu_ms:9.2f}{found.errors:8}"
            )
        each = ", ".join(
            f"{ours_[index].rate / bare_[index].rate:.2f}"
            for ours_, bare_ in zip(runway, floor, strict=True)
        )
        print(
            f"  Runway / floor: {ours.rate / bare.rate:.2f} (req/s; rounds {each}), "
            f"p50 {ours.p50 / bare.p50:.2f}x, p99 {ours.p99 / bare.p99:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=10, help="of each measurement")
    parser.add_argument("--api-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    binary = ensure_wrk()
    database.reset()
    key = workspaces.create_key("bench")[1]
    stream = make_stream(key)
    runway: list[tuple[Result, ...]] = []
    floor: list[tuple[Result, ...]] = []
    for _ in range(args.rounds):
        *ours, size = both(binary, args, "api.main:app", {}, key, stream)
        runway.append(tuple(ours))
        floor_env = {"FLOOR_QUEUE": FLOOR_QUEUE, "FLOOR_MESSAGE_BYTES": str(size)}
        *bare, _ = both(binary, args, "bench.floor_api:app", floor_env, key, stream)
        floor.append(tuple(bare))
    report(args, runway, floor)
    print(f"round trips per request (one process, sequential; message {size} bytes):")
    for name, target, env in (
        ("Runway", "api.main:app", {}),
        ("floor", "bench.floor_api:app", floor_env),
    ):
        found = round_trips(target, env, key, stream)
        print(
            f"  {name:7} POST /runs: Postgres {found['POST postgres']:.1f}, "
            f"Redis {found['POST redis']:.1f}; GET /runs/{{id}}: Postgres "
            f"{found['GET postgres']:.1f}, Redis {found['GET redis']:.1f}"
        )


if __name__ == "__main__":
    main()
