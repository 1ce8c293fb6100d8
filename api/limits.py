"""Limits on request bodies: their size (Starlette sets none) and how deeply their JSON nests
(Python's `json` and pydantic recurse, and what they accept the API could not serve back)."""

from __future__ import annotations

import email.message
import json
import operator
import re
from itertools import accumulate, count

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.jsonvalues import MAX_JSON_DEPTH, storable_text


class BodyLimit:
    """413 for a body over `max_bytes`: at once when Content-Length says so, otherwise as
    soon as the streamed body passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                # Raised inside the route's body parsing, where FastAPI passes HTTPException on.
                raise HTTPException(413, self._detail())
            return message

        await self.app(scope, counted, send)

    def _detail(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"

    async def _reject(self, send: Send) -> None:
        body = json.dumps({"detail": self._detail()}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class JsonDepthLimit:
    """422 for a JSON body in which a value nests deeper than MAX_JSON_DEPTH levels (the body
    itself being one more), naming the top-level field that does. Checked on the raw bytes
    before anything parses them, so no depth can make a parser recurse too far."""

    def __init__(self, app: ASGIApp, max_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _may_be_json(scope):
            await self.app(scope, receive, send)
            return
        body = bytearray()

        async def checked() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    self._check(bytes(body))
            return message

        await self.app(scope, checked, send)

    def _check(self, body: bytes) -> None:
        where = too_deep(body, self.max_depth + 1)
        if where is not None:
            problem = {
                "loc": ["body", *where],
                "msg": f"nested deeper than {self.max_depth} levels",
                "type": "value_error",
            }
            # Raised inside the route's body parsing, where FastAPI passes HTTPException on.
            raise HTTPException(422, [problem])


def _may_be_json(scope: Scope) -> bool:
    """Whether FastAPI would parse the body as JSON: no content type, or a JSON one."""
    declared = dict(scope["headers"]).get(b"content-type")
    if declared is None:
        return True
    header = email.message.Message()
    header["content-type"] = declared.decode("latin-1")
    subtype = header.get_content_subtype()
    return header.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_KEY_END = re.compile(rb"\s*:")
# Per byte outside strings: 2 opens a level, 0 closes one, 1 leaves the depth alone.
_STEPS = bytes(2 if byte in b"[{" else 0 if byte in b"]}" else 1 for byte in range(256))


def too_deep(body: bytes, limit: int) -> list[str] | None:
    """Where JSON text nests deeper than `limit` levels: [] for the body, [key] for a top-level
    field of an object; None if it does not (or the text is broken before it would). Linear
    time, no recursion; the work happens in C except once per string."""
    if _opens(body) <= limit:
        return None
    depth, field, position = 0, None, 0
    while True:
        quote = body.find(b'"', position)
        segment = body[position:] if quote < 0 else body[position:quote]
        deeper, depth = _levels(segment, depth, limit)
        if deeper:
            return [] if field is None else [field]
        string = _STRING_REST.match(body, quote + 1) if quote >= 0 else None
        if string is None:  # the end, or a string never closed: the parser will say so
            return None
        if depth == 1 and _KEY_END.match(body, string.end()):
            field = _key(body[quote : string.end()])
        position = string.end()


def _opens(text: bytes) -> int:
    return text.count(b"[") + text.count(b"{")


def _levels(segment: bytes, depth: int, limit: int) -> tuple[bool, int]:
    """Whether JSON text without strings, entered at `depth`, goes deeper than `limit`; and
    the depth it leaves at."""
    opens = _opens(segment)
    if depth + opens <= limit:
        return False, depth + opens - segment.count(b"]") - segment.count(b"}")
    steps = segment.translate(_STEPS)
    deepest = max(map(operator.sub, accumulate(steps), count(1)))
    return depth + deepest > limit, depth + sum(steps) - len(steps)


def _key(quoted: bytes) -> str | None:
    try:
        key = json.loads(quoted)
    except ValueError:
        return None
    return key if isinstance(key, str) and storable_text(key) == key else None
