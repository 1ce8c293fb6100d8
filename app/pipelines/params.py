"""Small readers for pipeline params that fail the run permanently on bad input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.errors import PermanentError


def number(params: Mapping[str, Any], name: str, default: float, minimum: float = 0) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise PermanentError(f"params.{name} must be a number >= {minimum}, got {value!r}")
    return float(value)


def integer(params: Mapping[str, Any], name: str, default: int, minimum: int = 0) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PermanentError(f"params.{name} must be an integer >= {minimum}, got {value!r}")
    return value


def text(params: Mapping[str, Any], name: str, default: str) -> str:
    value = params.get(name, default)
    if not isinstance(value, str):
        raise PermanentError(f"params.{name} must be a string, got {value!r}")
    return value
