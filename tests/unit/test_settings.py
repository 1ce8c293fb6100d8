"""Settings come from SPEC's environment variables, with SPEC's defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import Settings

SPEC_VARIABLES = [
    "DATABASE_URL",
    "REDIS_URL",
    "REDBEAT_REDIS_URL",
    "RUNWAY_MAX_CONCURRENT_JOBS",
    "RUNWAY_HEARTBEAT_SECONDS",
    "RUNWAY_LEASE_SECONDS",
    "RUNWAY_SWEEP_SECONDS",
    "RUNWAY_TICK_SECONDS",
    "RUNWAY_MAX_ATTEMPTS",
    "RUNWAY_RETRY_BASE_SECONDS",
    "RUNWAY_CANCEL_GRACE_SECONDS",
    "RUNWAY_PIPELINES",
    "RUNWAY_LOG_FORMAT",
    "FLOWER_BASIC_AUTH",
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in SPEC_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_are_specs(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://postgres@127.0.0.1:5432/runway"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.beat_redis_url == settings.redis_url
    assert (settings.max_concurrent_jobs, settings.max_attempts) == (2, 3)
    assert (settings.heartbeat_seconds, settings.lease_seconds, settings.sweep_seconds) == (
        10,
        60,
        10,
    )
    assert (settings.tick_seconds, settings.retry_base_seconds, settings.cancel_grace_seconds) == (
        1,
        5,
        30,
    )
    assert settings.pipelines == []
    assert settings.log_format == "json"


def test_environment_overrides(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RUNWAY_PIPELINES", "acme.pipelines, acme.more ,")
    clean_env.setenv("REDBEAT_REDIS_URL", "redis://beat:6379/3")
    clean_env.setenv("RUNWAY_LEASE_SECONDS", "5")
    settings = Settings()
    assert settings.pipelines == ["acme.pipelines", "acme.more"]
    assert settings.beat_redis_url == "redis://beat:6379/3"
    assert settings.lease_seconds == 5


def test_nonsense_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RUNWAY_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError, match="RUNWAY_LOG_FORMAT"):
        Settings()


def test_visibility_timeout_outlasts_the_longest_run(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.broker_visibility_timeout > settings.run_time_limit_seconds
