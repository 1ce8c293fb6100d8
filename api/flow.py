"""Request and response bodies of flow control: priorities, limit keys, limits, and why a
run waits. The bounds are app/limits' own, so the schema states what the service enforces."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from app.jsonvalues import NOT_BOOLEAN
from app.limits import service as limits
from app.models import MAX_LIMIT_KEYS

Priority = Annotated[
    Literal["high", "normal", "low"],
    Field(
        description="Among runs waiting for a worker, `high` starts before `normal` before `low`."
    ),
]
LimitKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=limits.KEY_PATTERN),
    Field(description="A limit key: 1 to 64 of `a-z 0-9 . _ : -`."),
]


def _unique(keys: list[str]) -> list[str]:
    if len(set(keys)) != len(keys):
        raise ValueError("names a limit key more than once")
    return keys


LimitKeys = Annotated[
    list[LimitKey],
    Field(
        max_length=MAX_LIMIT_KEYS,
        description=f"At most {MAX_LIMIT_KEYS} limit keys, each once: every run of the "
        "stream takes a slot of each key's limit.",
        json_schema_extra={"uniqueItems": True},
    ),
    AfterValidator(_unique),
]


class WaitingFor(BaseModel):
    """Why a due run has not started yet."""

    kind: Literal["concurrency", "rate", "workspace", "overlap"] = Field(
        description="A key's `max_concurrent`, a key's rate, the workspace's cap on running "
        "runs, or an earlier run of the stream (overlap `queue`)."
    )
    key: str | None = Field(None, description="The limit key, for `concurrency` and `rate`.")
    until: datetime | None = Field(None, description="When a rate permits the next start.")


def _number(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    return value


class Rate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: Annotated[int, Field(ge=1, le=limits.MAX_RATE_COUNT), NOT_BOOLEAN] = Field(
        description="How many runs naming the key may start in any `period_seconds`."
    )
    period_seconds: Annotated[
        float, Field(gt=0, le=limits.MAX_RATE_PERIOD_SECONDS), BeforeValidator(_number)
    ] = Field(description="The sliding window the count applies to, in seconds.")


class LimitIn(BaseModel):
    """The key's whole limit: a field left out is null (no cap, no rate)."""

    model_config = ConfigDict(extra="forbid")

    max_concurrent: Annotated[int, Field(ge=1, le=limits.MAX_CONCURRENT), NOT_BOOLEAN] | None = (
        Field(None, description="How many runs naming the key may run at once; null: no cap.")
    )
    rate: Rate | None = Field(None, description="How many may start per period; null: no rate.")


# Response bodies: what is stored, as it is; checking it again could only turn a row into a 500.
class RateOut(BaseModel):
    count: int
    period_seconds: float


class LimitOut(BaseModel):
    key: str
    max_concurrent: int | None
    rate: RateOut | None
    running: int = Field(description="Runs naming the key that are running now.")
    waiting: int = Field(description="Runs naming the key that wait to start.")

    @classmethod
    def of(cls, limit: limits.Limit) -> LimitOut:
        rate = None if limit.rate is None else RateOut(**asdict(limit.rate))
        return cls(
            key=limit.key,
            max_concurrent=limit.max_concurrent,
            rate=rate,
            running=limit.running,
            waiting=limit.waiting,
        )


class LimitList(BaseModel):
    items: list[LimitOut]
