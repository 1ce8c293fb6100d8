"""Flower as `celery -A app flower` runs it: behind FLOWER_BASIC_AUTH, on 127.0.0.1 unless
told otherwise, and never showing a password from any URL in the settings."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.processes import BIN, LOGS, REPO, Process
from tests.fixtures.redis_server import free_port
from tests.fixtures.secrets import DATABASE_PASSWORD, REDIS_PASSWORD
from tests.fixtures.services import wait_for

CREDENTIALS = ("operator", "fl0wer-s3cret")
SECRETS = (REDIS_PASSWORD, DATABASE_PASSWORD, CREDENTIALS[1])
# Every page and API of Flower that shows settings, workers or the broker.
PAGES = ("/", "/workers", "/broker", "/tasks", "/api/workers", "/api/queues/length", "/metrics")


@pytest.fixture
def flower(secret_urls: dict[str, str]) -> Iterator[tuple[Process, int]]:
    """Flower, started as a user would, with basic auth and no FLOWER_ADDRESS."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    env |= {"PYTHONPATH": str(REPO), "FLOWER_BASIC_AUTH": ":".join(CREDENTIALS), **secret_urls}
    tag = f"flower-{uuid.uuid4().hex[:6]}"
    command = [str(BIN / "celery"), "-A", "app", "flower", f"--port={port}"]
    process = Process(tag, command, env, LOGS / f"{tag}.log").start()
    try:
        wait_for(lambda: _status(port, "/") or not process.alive(), 30, "Flower to answer")
        assert process.alive(), process.log()[-3000:]
        yield process, port
    finally:
        process.kill()


def _status(port: int, path: str) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code
    except httpx.HTTPError:
        return None


def _listening(port: int) -> set[str]:
    """The local addresses (hex, as the kernel shows them) of sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_flower_asks_for_its_credentials(flower: tuple[Process, int]) -> None:
    _, port = flower
    for path in ("/", "/workers", "/broker", "/api/workers"):
        assert _status(port, path) == 401, path
    authorized = httpx.get(f"http://127.0.0.1:{port}/", auth=CREDENTIALS, timeout=5)
    assert authorized.status_code == 200
    wrong = httpx.get(f"http://127.0.0.1:{port}/", auth=(CREDENTIALS[0], "guess"), timeout=5)
    assert wrong.status_code == 401


def test_flower_listens_on_loopback_only(flower: tuple[Process, int]) -> None:
    _, port = flower
    assert _listening(port) == {"0100007F"}  # 127.0.0.1, and no other address


def test_no_password_in_anything_flower_shows(
    flower: tuple[Process, int], spawn: Callable[..., Process], secret_urls: dict[str, str]
) -> None:
    process, port = flower
    worker = spawn("worker", env=secret_urls)
    get = _getter(port)
    conf = wait_for(lambda: _conf(get, worker.node), 30, "Flower to show the worker's conf")
    assert "********" in conf["redbeat_redis_url"]  # shown, and masked
    assert "********" in conf["broker_url"]
    bodies = [get(path).text for path in (*PAGES, f"/worker/{worker.node}")]
    bodies.append(get(f"/api/workers?refresh=1&workername={worker.node}").text)
    for body in bodies:
        for secret in SECRETS:
            assert secret not in body
    assert not any(secret in process.log() for secret in SECRETS)


def _getter(port: int) -> Callable[[str], httpx.Response]:
    def get(path: str) -> httpx.Response:
        response = httpx.get(f"http://127.0.0.1:{port}{path}", auth=CREDENTIALS, timeout=10)
        assert response.status_code == 200, (path, response.text[:300])
        return response

    return get


def _conf(get: Callable[[str], httpx.Response], node: str) -> dict[str, Any] | None:
    workers = get(f"/api/workers?refresh=1&workername={node}").json()
    conf: dict[str, Any] | None = (workers.get(node) or {}).get("conf")
    return conf or None
