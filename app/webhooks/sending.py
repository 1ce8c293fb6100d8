"""One attempt to deliver one event: the body, its signature, and the POST.

The destination is resolved here, checked (no private address unless allowed), and the
request goes to the address that was checked, so a DNS answer that changes between the
check and the connection cannot send it elsewhere. Every attempt opens its own connection
(no keep-alive: a connection checked for one host is never reused for another that shares
its address). Redirects are not followed. A 2xx within TIMEOUT_SECONDS, all told, delivers:
a watchdog cuts the connection at the deadline, however slowly the answer trickles in.
Anything else is an error to retry. At most MAX_RESPONSE_BYTES of the answer are read, as
sent (no decompression), and only for the error message.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.webhooks import destinations, signing
from app.webhooks.store import Delivery

TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 4096
MAX_ERROR_CHARS = 300
USER_AGENT = "Runway-Webhooks/1"


@dataclass(frozen=True)
class Attempt:
    delivered: bool
    status_code: int | None = None
    error: str | None = None


def body(delivery: Delivery) -> bytes:
    """The event as sent: the same bytes on every attempt."""
    event = {
        "id": str(delivery.event_id),
        "type": delivery.type,
        "created_at": _utc(delivery.created_at),
        "workspace_id": str(delivery.workspace_id),
        "data": delivery.payload,
    }
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def new_client() -> httpx.Client:
    """Shared by every attempt of a process (thread-safe); no connection is kept alive."""
    return httpx.Client(
        timeout=httpx.Timeout(TIMEOUT_SECONDS),
        limits=httpx.Limits(max_keepalive_connections=0),
        follow_redirects=False,
        trust_env=False,  # no proxy from the environment: the checked address is the peer
        headers={
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            "Accept-Encoding": "identity",
        },
    )


def send(client: httpx.Client, delivery: Delivery, *, allow_private: bool) -> Attempt:
    parts = urlsplit(delivery.url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        # No time bound of its own here: a slow lookup holds this webhook's sender, counted
        # against its workspace, never a resolver thread that other tenants need.
        found = destinations.public_addresses(host, port, allow_private=allow_private, timeout=None)
        address = found[0]
    except destinations.Refused as refused:
        return Attempt(False, error=f"refused: {refused.reason}")
    pinned = destinations.pin(delivery.url, address)
    content = body(delivery)
    headers = {
        **pinned.headers,
        signing.EVENT_ID_HEADER: str(delivery.event_id),
        signing.SIGNATURE_HEADER: signing.signature(delivery.secret, content, int(time.time())),
    }
    return _post(client, pinned, headers, content)


def _post(
    client: httpx.Client,
    pinned: destinations.Pinned,
    headers: dict[str, str],
    content: bytes,
) -> Attempt:
    late = f"no answer within {TIMEOUT_SECONDS:g} s"
    watchdog = _Watchdog(TIMEOUT_SECONDS)
    extensions = {**pinned.extensions, "trace": watchdog.trace}
    try:
        with client.stream(
            "POST", pinned.url, content=content, headers=headers, extensions=extensions
        ) as response:
            in_time = not watchdog.fired  # the answer's status line and headers are in
            if response.is_success:
                return Attempt(in_time, response.status_code, None if in_time else late)
            answer = _read_bounded(response)
    except httpx.HTTPError as error:
        if isinstance(error, httpx.TimeoutException) or watchdog.fired:
            return Attempt(False, error=late)
        return Attempt(False, error=f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS])
    finally:
        watchdog.cancel()
    detail = f"HTTP {response.status_code}: {answer}".strip().removesuffix(":")
    return Attempt(False, response.status_code, detail[:MAX_ERROR_CHARS])


class _Watchdog:
    """Cuts the attempt's connection when its time is up. httpx's timeouts bound each read
    and write, not the whole: an answer sent a byte at a time would never time out.

    It keeps a duplicate of the connection's socket: TLS takes the original over (leaving it
    closed), while a shutdown of the duplicate still ends the connection under it."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True
        self._timer.start()

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore's trace hook: note each connection's socket as it is opened."""
        if event != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        found = None if stream is None else stream.get_extra_info("socket")
        if not isinstance(found, socket.socket):
            return
        duplicate = found.dup()
        with self._lock:
            self._sockets.append(duplicate)
            if self.fired:
                self._shut(duplicate)

    def _cut(self) -> None:
        with self._lock:
            self.fired = True
            for each in self._sockets:
                self._shut(each)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading the connection

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            for each in self._sockets:
                each.close()
            self._sockets.clear()


def _read_bounded(response: httpx.Response) -> str:
    """The start of a failure's answer, up to MAX_RESPONSE_BYTES as sent (no decoding), or
    as much of it as came before the connection failed."""
    received = b""
    with contextlib.suppress(httpx.HTTPError):
        for chunk in response.iter_raw():
            received += chunk
            if len(received) >= MAX_RESPONSE_BYTES:
                break
    return received[:MAX_RESPONSE_BYTES].decode("utf-8", "replace")


def _utc(moment: datetime) -> str:
    """As the API writes times (and migration 0007's runway_utc): no fraction when it is 0."""
    pattern = "%Y-%m-%dT%H:%M:%S.%fZ" if moment.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return moment.astimezone(UTC).strftime(pattern)
