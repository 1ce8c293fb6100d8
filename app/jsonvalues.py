"""What Runway can store and serve: JSON without NaN or Infinity, text without NUL characters
or lone surrogates, and nesting no deeper than MAX_JSON_DEPTH.

The depth limit is the tightest link of the chain a value passes through, with room to spare:
pydantic-core refuses to serialise a response nested more than 255 levels (the value sits two
or three levels down in a response: a run inside a page), its JSON parser stops at 200, Python's
`json` at about 1,000 (the interpreter's recursion limit), and Postgres' jsonb at several
thousand (its stack depth).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

MAX_JSON_DEPTH = 64

_LONE_SURROGATE = re.compile(
    r"[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]"
)


def storable_json(value: Any) -> str | None:
    """None if `value` can be stored as jsonb and served back, else a message saying why not."""
    if json_depth(value) > MAX_JSON_DEPTH:
        return f"nested deeper than {MAX_JSON_DEPTH} levels"
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        return f"not JSON that can be stored ({error})"
    for text in _strings(value):
        problem = _text_problem(text)
        if problem is not None:
            return problem
    return None


def storable_text(text: str) -> str:
    """`text` as Postgres can store it: NUL characters removed, lone surrogates replaced."""
    return text.replace("\x00", "").encode("utf-8", errors="replace").decode("utf-8")


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply objects and arrays nest in `value` (a scalar is 0, `{}` or `[1]` is 1),
    counted without recursion; it stops at `limit + 1`, so a cycle or a huge depth is cheap."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict | list | tuple):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = node.values() if isinstance(node, dict) else node
            pending.extend((child, depth) for child in children)
    return deepest


def _strings(value: Any) -> list[str]:
    """Every string in `value`, object keys included (its depth is already bounded)."""
    found: list[str] = []
    pending = [value]
    while pending:
        node = pending.pop()
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, dict):
            found.extend(key for key in node if isinstance(key, str))
            pending.extend(node.values())
        elif isinstance(node, list | tuple):
            pending.extend(node)
    return found


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which Postgres cannot store"
    if _LONE_SURROGATE.search(text):
        return "contains a lone surrogate (an unpaired \\ud800-\\udfff), which is not valid UTF-8"
    return None


def _not_a_boolean(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


# An integer as JSON Schema means it: 5 and 5.0 are integers, true is not. Bounds go before
# it (`Annotated[int, Field(ge=1), NOT_BOOLEAN]`), so that they stay in the JSON schema.
NOT_BOOLEAN = BeforeValidator(_not_a_boolean)
Integer = Annotated[int, NOT_BOOLEAN]
