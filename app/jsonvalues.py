"""What Postgres can store: JSON without NaN or Infinity, and text without NUL characters."""

from __future__ import annotations

import json
from typing import Any


def storable_json(value: Any) -> str | None:
    """None if `value` can be stored as jsonb, else a message saying why not."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        return f"not JSON that can be stored ({error})"
    if "\\u0000" in text:
        return "contains a NUL character (\\u0000), which Postgres cannot store"
    return None


def storable_text(text: str) -> str:
    """`text` with any NUL characters removed (Postgres text cannot hold them)."""
    return text.replace("\x00", "")
