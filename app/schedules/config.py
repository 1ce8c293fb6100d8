"""A stream's `schedule_config`: its validated shape and the fire times it implies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from app.errors import InvalidInput
from app.jsonvalues import NOT_BOOLEAN
from app.schedules.cron import CronSchedule, ScheduleError, load_timezone, parse_cron

MAX_INTERVAL_SECONDS = 366 * 24 * 3600


class ScheduleConfig(BaseModel):
    """Cron with a time zone, or a fixed interval; plus the overlap and misfire policies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: StrictBool = Field(True, description="False pauses the stream: no new scheduled runs.")
    cron: str | None = Field(
        None, description="Five-field cron in `timezone`, e.g. `0 6 * * 1` (Mondays at 06:00)."
    )
    interval_seconds: Annotated[int, Field(ge=1, le=MAX_INTERVAL_SECONDS), NOT_BOOLEAN] | None = (
        Field(None, description="Fire every N seconds instead of cron.")
    )
    timezone: str = Field("UTC", description="IANA time zone the cron fields are read in.")
    overlap: Literal["skip", "queue", "allow"] = Field(
        "skip",
        description="`skip`: no scheduled run starts while one of the stream is running; "
        "`queue`: it waits for the running one; `allow`: runs may overlap.",
    )
    misfire: Literal["run_once", "skip"] = Field(
        "run_once",
        description="After downtime: `run_once` makes one catch-up run, `skip` makes none.",
    )
    pause_after_failures: Annotated[int, Field(ge=1, le=1000), NOT_BOOLEAN] | None = Field(
        None, description="Pause after N consecutive failed scheduled runs."
    )
    late_after_seconds: Annotated[int, Field(ge=1, le=MAX_INTERVAL_SECONDS), NOT_BOOLEAN] | None = (
        Field(
            None,
            description="A scheduled run not started this many seconds after its slot raises a "
            "`run.late` webhook event (once per run).",
        )
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            load_timezone(value)
        except ScheduleError as error:
            raise ValueError(error.message) from None
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_cron(value, UTC_ZONE)
            except ScheduleError as error:
                raise ValueError(error.message) from None
        return value

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleConfig:
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("give exactly one of `cron` and `interval_seconds`")
        return self

    def cron_schedule(self) -> CronSchedule | None:
        if self.cron is None:
            return None
        return parse_cron(self.cron, load_timezone(self.timezone))

    def next_after(self, after: datetime, anchor: datetime | None = None) -> datetime:
        """The first fire time strictly after `after`.

        Intervals keep their grid: slots are `anchor + k * interval` for every whole k (the
        grid runs both ways from the anchor, any slot of it: the previous one, or the next)
        when an anchor is given; a new schedule's first slot is one interval from `after`.
        """
        cron = self.cron_schedule()
        if cron is not None:
            return cron.next_after(after)
        step = timedelta(seconds=self.interval_seconds or 0)
        if anchor is None:
            return after + step
        return anchor + step * ((after - anchor) // step + 1)

    def upcoming(
        self, after: datetime, count: int, anchor: datetime | None = None
    ) -> list[datetime]:
        times: list[datetime] = []
        for _ in range(count):
            after = anchor = self.next_after(after, anchor)
            times.append(after)
        return times


UTC_ZONE = load_timezone("UTC")


def parse(raw: dict[str, Any], field: str = "schedule_config") -> ScheduleConfig:
    """Validate a stored or submitted config; InvalidInput names the offending key."""
    try:
        return ScheduleConfig.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join([field, *(str(part) for part in first["loc"])])
        raise InvalidInput(where, first["msg"].removeprefix("Value error, ")) from None


def now() -> datetime:
    return datetime.now(UTC)
