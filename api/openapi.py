"""The OpenAPI document: FastAPI's, completed with what pydantic cannot say by itself.

That is the shape of free JSON (`params`: any JSON, text without NUL), the rules of a
schedule (exactly one of `cron` and `interval_seconds`, the cron syntax, IANA zone names) and
the pipelines this process has registered. Each is a rule the server enforces.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import available_timezones

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.jsonvalues import MAX_JSON_DEPTH
from app.pipelines import registry
from app.schedules.cron import MAX_EXPR_LENGTH

NO_NUL = r"^[^\x00]*$"
_MACROS = "yearly|annually|monthly|weekly|daily|midnight|hourly"
_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_DAYS = "sun|mon|tue|wed|thu|fri|sat"
# Per cron field: one value, and the steps the field allows (1 up to its number of values).
_CRON_FIELDS = (
    ("[0-5]?[0-9]", "[1-9]|[1-5][0-9]|60"),
    ("[01]?[0-9]|2[0-3]", "[1-9]|1[0-9]|2[0-4]"),
    ("0?[1-9]|[12][0-9]|3[01]", "[1-9]|[12][0-9]|3[01]"),
    (f"0?[1-9]|1[0-2]|{_MONTHS}", "[1-9]|1[0-2]"),
    (f"[0-7]|{_DAYS}", "[1-7]"),
)


def _cron_field(value: str, step: str) -> str:
    item = f"(\\*|({value})(-({value}))?)(/({step}))?"
    return f"{item}(,{item})*"


CRON_PATTERN = (
    f"^(@({_MACROS})|{' +'.join(_cron_field(value, step) for value, step in _CRON_FIELDS)})$"
)


def install(api: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            api.openapi_schema = document(api)
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


def document(api: FastAPI) -> dict[str, Any]:
    spec = get_openapi(
        title=api.title, version=api.version, description=api.description, routes=api.routes
    )
    schemas: dict[str, Any] = spec["components"]["schemas"]
    schemas.update(_json_schemas())
    schedule = schemas["ScheduleConfig"]
    _schedule_fields(schedule["properties"])
    schedule["oneOf"] = _one_trigger()
    schemas["ScheduleConfigPatch"] = _schedule_patch(schedule)
    for name in ("StreamCreate", "StreamUpdate"):
        schemas[name]["properties"]["pipeline"]["enum"] = registry.names()
    resolved: dict[str, Any] = _resolve_marks(spec)
    return resolved


def _json_schemas() -> dict[str, Any]:
    value = {"$ref": "#/components/schemas/JsonValue"}
    return {
        "JsonValue": {
            "anyOf": [
                {"type": "string", "pattern": NO_NUL},
                {"type": "number"},
                {"type": "boolean"},
                {"type": "null"},
                {"type": "array", "items": value},
                {"$ref": "#/components/schemas/JsonObject"},
            ]
        },
        "JsonObject": {
            "type": "object",
            "description": f"Any JSON object that nests at most {MAX_JSON_DEPTH} levels "
            "(deeper is a 422 naming the field); no text in it, keys included, holds a NUL "
            "character or a lone surrogate.",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": value,
        },
    }


def _schedule_fields(properties: dict[str, Any]) -> None:
    properties["cron"]["anyOf"][0].update(
        format="cron",
        minLength=1,
        description=f"At most {MAX_EXPR_LENGTH} characters: five fields "
        "(minute hour day-of-month month day-of-week) or a macro "
        "(@hourly, @daily, ...), matching the regular expression in `x-cron-pattern`; a "
        "range's start comes before its end, and the expression must name a time that "
        "exists (not 31 February).",
        **{"x-cron-pattern": CRON_PATTERN},
    )
    properties["timezone"]["enum"] = sorted(available_timezones() - {"localtime"})


def _one_trigger() -> list[dict[str, Any]]:
    def only(given: str, given_type: str, absent: str) -> dict[str, Any]:
        return {
            "required": [given],
            "properties": {given: {"type": given_type}, absent: {"type": "null"}},
        }

    return [only("cron", "string", "interval_seconds"), only("interval_seconds", "integer", "cron")]


def _schedule_patch(schedule: dict[str, Any]) -> dict[str, Any]:
    properties = {
        name: {key: value for key, value in field.items() if key != "default"}
        for name, field in schedule["properties"].items()
    }
    both = {
        "required": ["cron", "interval_seconds"],
        "properties": {"cron": {"type": "string"}, "interval_seconds": {"type": "integer"}},
    }
    return {
        "type": "object",
        "description": "Keys of ScheduleConfig to change; at most one of `cron` and "
        "`interval_seconds` not null.",
        "properties": properties,
        "additionalProperties": False,
        "not": both,
    }


def _resolve_marks(node: Any) -> Any:
    """`{"x-runway": name}` (from api/schemas.py) becomes a reference to that schema."""
    if isinstance(node, dict):
        if "x-runway" in node:
            rest = {key: value for key, value in node.items() if key != "x-runway"}
            return {"$ref": f"#/components/schemas/{node['x-runway']}", **rest}
        return {key: _resolve_marks(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve_marks(item) for item in node]
    return node
