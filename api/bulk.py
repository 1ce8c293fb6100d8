"""Request and response bodies of backfill and the bulk run operations. A filter field may
be left out but not sent as null, so `minProperties: 1` says "at least one filter"."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from api.schemas import not_nullable
from app.runs.bulk import MAX_RETRIES
from app.schedules.backfill import MAX_SLOTS

RunTypeName = Literal["scheduled", "manual", "test"]
LiveStatus = Literal["pending", "running", "retrying"]
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339(value: Any) -> Any:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 time with its offset, like 2026-03-29T06:00:00+02:00")
    return value


# A time as the schema says it (`format: date-time`), never a number or another notation.
Moment = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]


def _unique(statuses: list[str]) -> list[str]:
    if len(set(statuses)) != len(statuses):
        raise ValueError("names a status more than once")
    return statuses


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may be left out, but not null")
    return value


class BackfillIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: Moment = Field(
        alias="from", description="The first slot considered (inclusive), with its offset."
    )
    to: Moment = Field(
        description="The end of the range (exclusive), with its offset; a time after now "
        "is taken as now (only past slots are filled). No later than `from`: no slots."
    )
    dry_run: StrictBool = Field(False, description="List the slots; create nothing.")


class BackfillOut(BaseModel):
    slots: list[datetime] = Field(
        description=f"Every slot of the stream's schedule in [from, to), oldest first; at most "
        f"{MAX_SLOTS} (a longer range is a 422: backfill it in parts)."
    )
    created: int = Field(description="Runs created (a dry run: runs it would create).")
    existing: int = Field(description="Slots that already had their run: nothing done.")
    dry_run: bool


class BulkCancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    stream_id: UUID | None = Field(None, json_schema_extra=not_nullable)
    status: (
        Annotated[
            list[LiveStatus],
            Field(min_length=1, json_schema_extra={"uniqueItems": True}),
            AfterValidator(_unique),
        ]
        | None
    ) = Field(None, description="Any of these statuses.", json_schema_extra=not_nullable)
    run_type: RunTypeName | None = Field(None, json_schema_extra=not_nullable)
    created_before: Moment | None = Field(
        None, description="Runs created before this time.", json_schema_extra=not_nullable
    )

    _not_null = field_validator("stream_id", "status", "run_type", "created_before", mode="before")(
        _refuse_null
    )

    @model_validator(mode="after")
    def _a_filter(self) -> BulkCancelIn:
        if not self.model_fields_set:
            raise ValueError(
                "give at least one filter: stream_id, status, run_type or created_before"
            )
        return self


class BulkCancelOut(BaseModel):
    cancelled: int = Field(description="Waiting runs (pending, retrying) cancelled at once.")
    cancel_requested: int = Field(
        description="Running runs asked to stop: each ends `cancelled` within the grace."
    )


class BulkRetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["failed", "cancelled"] = Field(description="Retry runs that ended so.")
    stream_id: UUID | None = Field(None, json_schema_extra=not_nullable)
    run_type: RunTypeName | None = Field(None, json_schema_extra=not_nullable)
    completed_after: Moment | None = Field(
        None, description="Runs that ended after this time.", json_schema_extra=not_nullable
    )

    _not_null = field_validator("stream_id", "run_type", "completed_after", mode="before")(
        _refuse_null
    )


class BulkRetryOut(BaseModel):
    created: int = Field(
        description=f"New runs, each with `retry_of`: at most {MAX_RETRIES}, oldest "
        "originals first; a run retried before (by any means) is not retried again."
    )
    more: bool = Field(description="More runs match: call again for the next ones.")
