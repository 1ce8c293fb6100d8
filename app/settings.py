"""Runway's settings: the one place that reads the environment."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/runway"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class Settings(BaseSettings):
    """Every process (api, worker, beat) builds the same object from the same environment."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = Field(DEFAULT_DATABASE_URL, validation_alias="DATABASE_URL")
    redis_url: str = Field(DEFAULT_REDIS_URL, validation_alias="REDIS_URL")
    redbeat_redis_url: str | None = Field(None, validation_alias="REDBEAT_REDIS_URL")

    max_concurrent_jobs: int = Field(2, ge=1, validation_alias="RUNWAY_MAX_CONCURRENT_JOBS")
    heartbeat_seconds: float = Field(10, ge=1, validation_alias="RUNWAY_HEARTBEAT_SECONDS")
    lease_seconds: float = Field(60, ge=1, validation_alias="RUNWAY_LEASE_SECONDS")
    sweep_seconds: float = Field(10, ge=1, validation_alias="RUNWAY_SWEEP_SECONDS")
    tick_seconds: float = Field(1, ge=0.1, validation_alias="RUNWAY_TICK_SECONDS")
    misfire_grace_seconds: float = Field(60, ge=1, validation_alias="RUNWAY_MISFIRE_GRACE_SECONDS")
    max_attempts: int = Field(3, ge=1, le=100, validation_alias="RUNWAY_MAX_ATTEMPTS")
    retry_base_seconds: float = Field(5, ge=0, validation_alias="RUNWAY_RETRY_BASE_SECONDS")
    retry_max_seconds: float = Field(600, ge=1, validation_alias="RUNWAY_RETRY_MAX_SECONDS")
    cancel_grace_seconds: float = Field(30, ge=1, validation_alias="RUNWAY_CANCEL_GRACE_SECONDS")
    run_time_limit_seconds: float = Field(
        3600, ge=1, validation_alias="RUNWAY_RUN_TIME_LIMIT_SECONDS"
    )
    pipelines: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="RUNWAY_PIPELINES"
    )
    log_format: Literal["json", "console"] = Field("json", validation_alias="RUNWAY_LOG_FORMAT")
    log_level: str = Field("INFO", validation_alias="RUNWAY_LOG_LEVEL")
    queue_prefix: str = Field("runway", validation_alias="RUNWAY_QUEUE_PREFIX")
    max_body_bytes: int = Field(1_048_576, ge=1024, validation_alias="RUNWAY_MAX_BODY_BYTES")
    # Ended runs, ticks (and deliveries) older than this are deleted; 0 keeps everything.
    retention_days: int = Field(30, ge=0, validation_alias="RUNWAY_RETENTION_DAYS")
    # Webhooks: attempts per event and endpoint, the first redelivery delay (it doubles, with
    # jitter, up to an hour), and whether private, loopback and link-local addresses may
    # receive them.
    webhook_max_attempts: int = Field(
        12, ge=1, le=100, validation_alias="RUNWAY_WEBHOOK_MAX_ATTEMPTS"
    )
    webhook_retry_base_seconds: float = Field(
        10, ge=0.1, le=3600, validation_alias="RUNWAY_WEBHOOK_RETRY_BASE_SECONDS"
    )
    webhook_allow_private: bool = Field(False, validation_alias="RUNWAY_WEBHOOK_ALLOW_PRIVATE")
    # Signs the console's session cookies; unset, a secret made once and kept in Postgres.
    ui_secret: SecretStr | None = Field(None, min_length=16, validation_alias="RUNWAY_UI_SECRET")

    @field_validator("pipelines", mode="before")
    @classmethod
    def _split_modules(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _agree(self) -> Settings:
        """Each setting may be fine alone and the set still unworkable: refuse such a set."""
        problems = self._contradictions()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _contradictions(self) -> list[str]:
        heartbeat, lease = _show(self.heartbeat_seconds), _show(self.lease_seconds)
        grace, tick = _show(self.cancel_grace_seconds), _show(self.tick_seconds)
        rules = [
            (
                self.lease_seconds > 2 * self.heartbeat_seconds,
                f"RUNWAY_LEASE_SECONDS={lease} must be longer than two heartbeats "
                f"(RUNWAY_HEARTBEAT_SECONDS={heartbeat}), or healthy runs get rescued",
            ),
            (
                self.cancel_grace_seconds >= self.heartbeat_seconds,
                f"RUNWAY_CANCEL_GRACE_SECONDS={grace} must be at least a heartbeat "
                f"(RUNWAY_HEARTBEAT_SECONDS={heartbeat}), the time a worker takes to see a cancel",
            ),
            (
                self.retry_max_seconds >= self.retry_base_seconds,
                f"RUNWAY_RETRY_MAX_SECONDS={_show(self.retry_max_seconds)} must be at least "
                f"RUNWAY_RETRY_BASE_SECONDS={_show(self.retry_base_seconds)}, the delay it caps",
            ),
            (
                self.misfire_grace_seconds > self.tick_seconds,
                f"RUNWAY_MISFIRE_GRACE_SECONDS={_show(self.misfire_grace_seconds)} must be "
                f"longer than a tick (RUNWAY_TICK_SECONDS={tick}), or slots on time count as late",
            ),
        ]
        return [message for holds, message in rules if not holds]

    @property
    def beat_redis_url(self) -> str:
        return self.redbeat_redis_url or self.redis_url

    @property
    def runs_queue(self) -> str:
        return f"{self.queue_prefix}.runs"

    @property
    def control_queue(self) -> str:
        return f"{self.queue_prefix}.control"

    visibility_timeout_seconds: float | None = Field(
        None, ge=1, validation_alias="RUNWAY_BROKER_VISIBILITY_TIMEOUT"
    )
    broker_restore_seconds: int | None = Field(
        None, ge=1, validation_alias="RUNWAY_BROKER_RESTORE_SECONDS"
    )

    @property
    def broker_visibility_timeout(self) -> float:
        """Longer than any run may take, so a healthy long run is not delivered twice."""
        if self.visibility_timeout_seconds is not None:
            return self.visibility_timeout_seconds
        return max(self.run_time_limit_seconds, self.retry_max_seconds) + 900


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings. Settings it cannot work with stop it at start, with one line
    that names them (never their values: a URL may hold a password)."""
    try:
        return Settings()
    except ValidationError as error:
        raise SystemExit(f"runway: invalid settings: {_explain(error)}") from None


def _explain(error: ValidationError) -> str:
    problems = []
    for problem in error.errors(include_input=False, include_url=False):
        message = problem["msg"].removeprefix("Value error, ")
        where = ".".join(str(part) for part in problem["loc"])
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems).replace("\n", " ")


def _show(seconds: float) -> str:
    return f"{seconds:g}"
