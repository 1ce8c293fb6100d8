"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from api.flow import LimitKeys, Priority, WaitingFor
from app.jsonvalues import Integer, storable_json
from app.models import MAX_LIMIT_KEYS
from app.runs.service import CURSOR_PATTERN
from app.schedules.config import ScheduleConfig
from app.streams.service import Stream


def _storable(value: dict[str, Any]) -> dict[str, Any]:
    problem = storable_json(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _one_trigger(patch: dict[str, Any]) -> dict[str, Any]:
    """Setting `cron` clears `interval_seconds` and the other way round, unless both are given."""
    for given, other in (("cron", "interval_seconds"), ("interval_seconds", "cron")):
        if patch.get(given) is not None and other not in patch:
            return {**patch, other: None}
    return patch


def _no_default(schema: dict[str, Any]) -> None:
    """For a field that may be left out but not sent as null: no `default: null` either."""
    schema.pop("default", None)


def not_nullable(schema: dict[str, Any]) -> None:
    """For an `X | None` field that may be left out but not sent as null: the schema of X."""
    _no_default(schema)
    branches = schema.pop("anyOf")
    value = next(branch for branch in branches if branch != {"type": "null"})
    schema.update({**value, **schema})


# Request bodies: JSON objects and text that Postgres can store and the API can serve back
# (no NaN, NUL or lone surrogate; at most MAX_JSON_DEPTH levels deep). api/openapi.py puts
# the schemas of `x-runway` in the document.
Params = Annotated[
    dict[str, Any], AfterValidator(_storable), WithJsonSchema({"x-runway": "JsonObject"})
]
SchedulePatch = Annotated[
    dict[str, Any],
    AfterValidator(_storable),
    AfterValidator(_one_trigger),
    WithJsonSchema({"x-runway": "ScheduleConfigPatch"}),
]
# Response bodies: what is stored, as it is; checking it again could only turn a row into a 500.
JsonObject = dict[str, Any]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
Cursor = Annotated[
    str,
    StringConstraints(pattern=CURSOR_PATTERN),
    Field(description="Where a page ends: its last run's creation time and id."),
]


class StreamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(description="A label for people.")
    pipeline: Text = Field(description="A registered pipeline name.")
    params: Params = Field(default_factory=dict, description="Passed to every run's pipeline.")
    schedule_config: ScheduleConfig | None = Field(
        None, description="When the stream runs by itself; null: only on demand."
    )
    priority: Priority = "normal"
    limit_keys: LimitKeys = Field(default_factory=list)


class StreamUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text | SkipJsonSchema[None] = Field(None, json_schema_extra=_no_default)
    pipeline: Text | SkipJsonSchema[None] = Field(
        None, description="A registered pipeline name.", json_schema_extra=_no_default
    )
    params: Params | SkipJsonSchema[None] = Field(
        None, description="Replaces the stream's params.", json_schema_extra=_no_default
    )
    schedule_config: SchedulePatch | None = Field(
        None,
        description="Keys to change in the schedule, merged into the current one; null "
        'removes the schedule. `{"enabled": false}` pauses the stream. Setting `cron` clears '
        "`interval_seconds` and the other way round. A stream without a schedule needs a "
        "whole one (`cron` or `interval_seconds`).",
    )
    # `X | None` (not SkipJsonSchema, a union that would name its branches in a 422's `loc`),
    # null refused by `_not_null` and left out of the schema by `not_nullable`.
    priority: Priority | None = Field(None, json_schema_extra=not_nullable)
    limit_keys: LimitKeys | None = Field(
        None,
        description=f"Replaces the stream's limit keys: at most {MAX_LIMIT_KEYS}, each once.",
        json_schema_extra=not_nullable,
    )

    @field_validator("name", "pipeline", "params", "priority", "limit_keys", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


class StreamOut(BaseModel):
    id: UUID
    name: str
    pipeline: str
    params: JsonObject
    schedule_config: JsonObject | None
    next_scheduled_run: datetime | None
    last_scheduled_run: datetime | None
    paused_reason: str | None
    priority: Priority
    limit_keys: list[str]
    created_at: datetime
    updated_at: datetime
    upcoming: list[datetime] = Field(description="The next five fire times, UTC.")

    @classmethod
    def of(cls, stream: Stream) -> StreamOut:
        return cls.model_validate({**stream.row._mapping, "upcoming": stream.upcoming})


class TickOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    scheduled_for: datetime
    outcome: Literal["fired", "skipped_overlap", "missed", "backfilled"]
    execution_id: UUID | None
    reason: str | None
    created_at: datetime


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stream_id: UUID
    run_type: Literal["manual", "test"] = "manual"
    params: Params | None = Field(None, description="Overlaid on the stream's params.")
    priority: Priority | None = Field(
        None, description="This run's priority; null or left out: the stream's."
    )


RunStatusName = Literal["pending", "running", "retrying", "completed", "failed", "cancelled"]


class RunOut(BaseModel):
    id: UUID
    stream_id: UUID
    run_type: Literal["scheduled", "manual", "test"]
    status: RunStatusName
    attempt: int = Field(description="Attempts started so far (0 while pending).")
    max_attempts: int
    params: JsonObject
    progress: JsonObject | None = Field(description="`{percent, message}` as last reported.")
    result: JsonObject | None
    error: str | None
    error_type: str | None
    cancel_requested: bool
    scheduled_for: datetime | None
    created_at: datetime
    started_at: datetime | None = Field(description="When the first attempt started.")
    completed_at: datetime | None
    retry_of: UUID | None
    priority: Priority
    limit_keys: list[str]
    waiting_for: WaitingFor | None = Field(
        description="Null, or why this due run has not started: it waits, `pending`."
    )

    @classmethod
    def of(cls, row: Any) -> RunOut:
        """From a run's row: SQLAlchemy's, or psycopg's named tuple (both have `_asdict`)."""
        fields = row._asdict()
        fields["cancel_requested"] = fields["cancel_requested_at"] is not None
        return cls.model_validate(fields)


class RunPage(BaseModel):
    items: list[RunOut]
    next_cursor: Cursor | None = Field(description="Pass as `cursor` for the next page.")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unavailable"]
    broker: Literal["ok", "unavailable"]


class StatusOut(BaseModel):
    pending_count: int = Field(
        description="Pending runs that may start (waiting for a worker); those held back by "
        "flow control are in `waiting_count` instead."
    )
    waiting_count: int = Field(
        description="Pending and retrying runs held back by flow control (`waiting_for` set: "
        "a limit key, the workspace's cap, or an earlier run of the stream)."
    )
    running_count: int
    retrying_count: int = Field(
        description="Runs waiting out their backoff before another attempt; those held back "
        "by flow control are in `waiting_count` instead."
    )
    completed_count: int
    failed_count: int
    cancelled_count: int
    total_count: int = Field(description="Every run stored, whatever its status.")
    is_processing: bool = Field(description="Runs are waiting, running or retrying.")
    recent_failures: list[RunOut] = Field(description="The ten latest failed runs.")


class WorkerOut(BaseModel):
    name: str
    active: int = Field(description="Tasks running now.")
    processed: int = Field(description="Tasks received since the worker started.")


class WorkersOut(BaseModel):
    """Workers are shared by every workspace: this is the same for every key."""

    online_count: int
    workers: list[WorkerOut]


class CleanupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["failed", "cancelled", "completed"]
    older_than_days: Integer = Field(ge=0, le=36500)


class CleanupOut(BaseModel):
    deleted: int
