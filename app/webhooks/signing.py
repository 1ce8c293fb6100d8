"""Webhook signatures: an HMAC-SHA256 over the timestamp and the body, sent in one header.

The header reads `t=<unix seconds>,v1=<hex digest>`. The digest covers `"<t>." + body`, so a
captured request cannot be replayed later with a new timestamp. Receivers may see several
`v1=` parts while a secret is being rotated; any one of them matching is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

SIGNATURE_HEADER = "Runway-Signature"
EVENT_ID_HEADER = "Runway-Event-Id"

_TIMESTAMP = re.compile(r"[0-9]{1,15}")


def new_secret() -> str:
    """A fresh signing secret for a webhook."""
    return "whsec_" + secrets.token_urlsafe(32)


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The value of the signature header for `body` sent at `timestamp` (unix seconds)."""
    return f"t={timestamp},v1={_digest(secret, body, timestamp)}"


def _parse(header: str) -> tuple[int, list[str]] | None:
    """The timestamp and the v1 digests of a header, or None when it is malformed."""
    timestamp: int | None = None
    digests: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            # A second `t=` makes the header ambiguous: which one was signed?
            if timestamp is not None or not _TIMESTAMP.fullmatch(value):
                return None
            timestamp = int(value)
        elif key == "v1":
            digests.append(value)
    if timestamp is None or not digests:
        return None
    return timestamp, digests


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance_seconds: float = 300,
    now: float | None = None,
) -> bool:
    """Whether `header` signs `body` with `secret`, at a time within the tolerance of now."""
    parsed = _parse(header) if isinstance(header, str) else None
    if parsed is None:
        return False
    timestamp, digests = parsed
    current = time.time() if now is None else now
    # Written so that a NaN (from `now` or the tolerance) refuses rather than accepts.
    if not abs(current - timestamp) <= tolerance_seconds:
        return False
    expected = _digest(secret, body, timestamp).encode()
    # Every candidate is compared, so the time taken does not tell which one matched.
    matches = [hmac.compare_digest(expected, d.encode("utf-8", "replace")) for d in digests]
    return any(matches)
