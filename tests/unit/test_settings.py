"""Settings come from SPEC's environment variables, with SPEC's defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import Settings, get_settings
from tests.timings import TEST_TIMINGS

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
# Runway's own, beyond SPEC's table; tests/conftest.py sets some of them.
OTHER_VARIABLES = ["RUNWAY_RETRY_MAX_SECONDS", "RUNWAY_MISFIRE_GRACE_SECONDS"]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in SPEC_VARIABLES + OTHER_VARIABLES:
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
    clean_env.setenv("RUNWAY_HEARTBEAT_SECONDS", "2")
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


def _with(env: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        env.setenv(name, value)


def test_the_test_timings_agree(clean_env: pytest.MonkeyPatch) -> None:
    _with(clean_env, TEST_TIMINGS)
    assert Settings().lease_seconds == 5


@pytest.mark.parametrize(
    ("values", "named"),
    [
        (
            {"RUNWAY_LEASE_SECONDS": "2", "RUNWAY_HEARTBEAT_SECONDS": "1"},
            "RUNWAY_LEASE_SECONDS=2 must be longer than two heartbeats "
            "(RUNWAY_HEARTBEAT_SECONDS=1)",
        ),
        (
            {"RUNWAY_LEASE_SECONDS": "60", "RUNWAY_HEARTBEAT_SECONDS": "30"},
            "RUNWAY_LEASE_SECONDS=60 must be longer than two heartbeats "
            "(RUNWAY_HEARTBEAT_SECONDS=30)",
        ),
        (
            {"RUNWAY_CANCEL_GRACE_SECONDS": "5", "RUNWAY_HEARTBEAT_SECONDS": "10"},
            "RUNWAY_CANCEL_GRACE_SECONDS=5 must be at least a heartbeat "
            "(RUNWAY_HEARTBEAT_SECONDS=10)",
        ),
        (
            {"RUNWAY_RETRY_MAX_SECONDS": "3", "RUNWAY_RETRY_BASE_SECONDS": "5"},
            "RUNWAY_RETRY_MAX_SECONDS=3 must be at least RUNWAY_RETRY_BASE_SECONDS=5",
        ),
        (
            {"RUNWAY_MISFIRE_GRACE_SECONDS": "5", "RUNWAY_TICK_SECONDS": "10"},
            "RUNWAY_MISFIRE_GRACE_SECONDS=5 must be longer than a tick (RUNWAY_TICK_SECONDS=10)",
        ),
    ],
)
def test_settings_that_contradict_each_other_are_refused(
    clean_env: pytest.MonkeyPatch, values: dict[str, str], named: str
) -> None:
    _with(clean_env, values)
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert named in str(refused.value)


def test_get_settings_stops_with_one_line_naming_every_contradiction(
    clean_env: pytest.MonkeyPatch,
) -> None:
    _with(clean_env, {"RUNWAY_LEASE_SECONDS": "2", "RUNWAY_RETRY_BASE_SECONDS": "900"})
    line = _stop_line()
    assert "\n" not in line
    assert line.startswith("runway: invalid settings: ")
    assert "RUNWAY_LEASE_SECONDS=2 must be longer than two heartbeats" in line
    assert "RUNWAY_RETRY_MAX_SECONDS=600 must be at least RUNWAY_RETRY_BASE_SECONDS=900" in line


def test_get_settings_names_a_malformed_variable_without_its_value(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("RUNWAY_LEASE_SECONDS", "soon")
    line = _stop_line()
    assert "\n" not in line and "RUNWAY_LEASE_SECONDS" in line and "soon" not in line


def _stop_line() -> str:
    """What get_settings() stops the process with, under the environment as it is now."""
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as stopped:
            get_settings()
    finally:
        get_settings.cache_clear()
    return str(stopped.value.code)
