"""One attempt's time limit, end to end on local sockets: an answer that trickles in, over
plain HTTP and over TLS, is cut at the deadline (httpx alone would wait for it forever),
and an answer in time delivers."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import httpx
import pytest

from app.webhooks import destinations, sending
from tests.fixtures.tls import make_certificate

HOST = "hooks.example.test"
TRICKLE_SECONDS = 6.0


@dataclass
class Server:
    port: int
    ca_file: Path | None
    delay: float  # seconds between the status line and each following header byte


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return make_certificate(tmp_path, HOST)


def _serve(listener: socket.socket, context: ssl.SSLContext | None, delay: float) -> None:
    """One connection: read the request, answer 200 at once or a byte every `delay` s."""
    listener.settimeout(10)
    try:
        raw, _ = listener.accept()
        conn = context.wrap_socket(raw, server_side=True) if context else raw
        with conn:
            conn.recv(65536)
            if not delay:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            deadline = time.monotonic() + TRICKLE_SECONDS
            while time.monotonic() < deadline:
                conn.sendall(b"X")
                threading.Event().wait(delay)  # the client's reading is what is timed
            conn.sendall(b": y\r\nContent-Length: 0\r\n\r\n")
    except (OSError, ssl.SSLError):
        pass  # the client cut the connection: what the test wants


@pytest.fixture(params=["http", "https"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _server(scheme: str, certificate: tuple[Path, Path], delay: float) -> Iterator[Server]:
    context = None
    if scheme == "https":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*certificate)
    listener = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=_serve, args=(listener, context, delay), daemon=True)
    thread.start()
    ca_file = certificate[0] if scheme == "https" else None
    yield Server(listener.getsockname()[1], ca_file, delay)
    listener.close()
    thread.join(TRICKLE_SECONDS + 5)


def _attempt(scheme: str, server: Server) -> tuple[sending.Attempt, float]:
    verify: ssl.SSLContext | bool = True
    if server.ca_file is not None:
        verify = ssl.create_default_context(cafile=str(server.ca_file))
    client = httpx.Client(verify=verify, limits=httpx.Limits(max_keepalive_connections=0))
    pinned = destinations.pin(f"{scheme}://{HOST}:{server.port}/hook", IPv4Address("127.0.0.1"))
    started = time.monotonic()
    with client:
        attempt = sending._post(client, pinned, {"Content-Type": "application/json"}, b"{}")
    return attempt, time.monotonic() - started


def test_an_answer_that_trickles_in_is_cut_at_the_deadline(
    scheme: str, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sending, "TIMEOUT_SECONDS", 1.0)
    for server in _server(scheme, certificate, delay=0.2):
        attempt, seconds = _attempt(scheme, server)
        assert not attempt.delivered
        assert attempt.error == "no answer within 1 s"
        assert seconds < 2.5, f"cut after {seconds:.1f}s, not at the 1 s deadline"


def test_an_answer_in_time_delivers(
    scheme: str, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sending, "TIMEOUT_SECONDS", 1.0)
    for server in _server(scheme, certificate, delay=0):
        attempt, _ = _attempt(scheme, server)
        assert attempt == sending.Attempt(True, 200)
