"""What `runway` prints: aligned tables and records for people, JSON with `--json`, and the
one line on stderr that names what went wrong."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from app.errors import DatabaseUnavailable, RunwayError
from app.settings import get_settings

# A column of a table: its header, and the field it shows (or how to work it out).
Column = tuple[str, str | Callable[[Mapping[str, Any]], Any]]
MAX_CELL = 60


def show_list(items: Sequence[Mapping[str, Any]], columns: Sequence[Column], as_json: bool) -> None:
    print(to_json(list(items)) if as_json else table(items, columns))


def show_one(item: Mapping[str, Any], as_json: bool) -> None:
    print(to_json(item) if as_json else record(item))


def table(items: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """Left-aligned columns, two spaces apart; one line per item, however long its values."""
    rows = [[header for header, _ in columns]]
    rows += [[_cell(_value(item, field), MAX_CELL) for _, field in columns] for item in items]
    widths = [max(len(row[index]) for row in rows) for index in range(len(columns))]
    lines = [
        "  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def record(item: Mapping[str, Any]) -> str:
    """One field per line: `name  value`, names aligned."""
    width = max((len(name) for name in item), default=0)
    indent = "\n" + " " * (width + 2)
    return "\n".join(
        f"{name.ljust(width)}  {_cell(value).replace(chr(10), indent)}".rstrip()
        for name, value in item.items()
    )


def to_json(value: Any) -> str:
    return json.dumps(value, default=_jsonable, indent=2, ensure_ascii=False)


def fail(message: str) -> int:
    """Say what went wrong in one line on stderr; the exit status of a failed command."""
    print(" ".join(message.split()), file=sys.stderr)
    return 1


def explain(error: Exception) -> str:
    """One line naming the problem, never a password and never a traceback."""
    if isinstance(error, DatabaseUnavailable | OperationalError | psycopg.OperationalError):
        return database_unavailable()
    if isinstance(error, RunwayError):
        return str(error)
    if isinstance(error, DBAPIError):
        return f"the database refused the request: {_first_line(str(error.orig))}"
    return f"unexpected {type(error).__name__}: {_first_line(str(error))}"


def database_unavailable() -> str:
    url = make_url(get_settings().database_url)
    where = f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"
    return f"database unavailable at {where} (DATABASE_URL): is Postgres running there?"


def _value(item: Mapping[str, Any], field: str | Callable[[Mapping[str, Any]], Any]) -> Any:
    return item.get(field) if isinstance(field, str) else field(item)


def _cell(value: Any, limit: int | None = None) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, datetime):
        text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    elif isinstance(value, dict | list):
        text = json.dumps(value, default=_jsonable, ensure_ascii=False)
    else:
        text = str(value)
    if limit is None:
        return text
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "(no message)"
