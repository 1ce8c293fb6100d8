"""One attempt to deliver one event: the body, its signature, and the POST.

The destination is resolved here, checked (no private address unless allowed), and the
request goes to the address that was checked, so a DNS answer that changes between the
check and the connection cannot send it elsewhere. Redirects are not followed; a 2xx within
TIMEOUT_SECONDS delivers; anything else is an error to retry. At most
MAX_RESPONSE_BYTES of the answer are read, and only for the error message.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
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
    """Shared by every attempt of a process (thread-safe, keeps connections alive)."""
    return httpx.Client(
        timeout=httpx.Timeout(TIMEOUT_SECONDS),
        follow_redirects=False,
        trust_env=False,  # no proxy from the environment: the checked address is the peer
        headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
    )


def send(client: httpx.Client, delivery: Delivery, *, allow_private: bool) -> Attempt:
    parts = urlsplit(delivery.url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        address = destinations.public_addresses(host, port, allow_private=allow_private)[0]
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
    deadline = time.monotonic() + TIMEOUT_SECONDS
    try:
        with client.stream(
            "POST", pinned.url, content=content, headers=headers, extensions=pinned.extensions
        ) as response:
            answer = _read_bounded(response, deadline)
    except httpx.TimeoutException:
        return Attempt(False, error=f"no answer within {TIMEOUT_SECONDS:g} s")
    except httpx.HTTPError as error:
        return Attempt(False, error=f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS])
    if response.is_success:
        return Attempt(True, response.status_code)
    detail = f"HTTP {response.status_code}: {answer}".strip().removesuffix(":")
    return Attempt(False, response.status_code, detail[:MAX_ERROR_CHARS])


def _read_bounded(response: httpx.Response, deadline: float) -> str:
    """The start of the answer, read up to MAX_RESPONSE_BYTES and while time is left."""
    if response.is_success:
        return ""
    received = b""
    for chunk in response.iter_bytes():
        received += chunk
        if len(received) >= MAX_RESPONSE_BYTES or time.monotonic() > deadline:
            break
    return received[:MAX_RESPONSE_BYTES].decode("utf-8", "replace")


def _utc(moment: datetime) -> str:
    """As the API writes times (and migration 0007's runway_utc): no fraction when it is 0."""
    pattern = "%Y-%m-%dT%H:%M:%S.%fZ" if moment.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return moment.astimezone(UTC).strftime(pattern)
