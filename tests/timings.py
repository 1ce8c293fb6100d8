"""The short timings SPEC gives for tests (heartbeat 1, lease 5, sweep 2, cancel grace 3,
retry base 1), as environment variables: set for every test session by tests/conftest.py."""

TEST_TIMINGS = {
    "RUNWAY_HEARTBEAT_SECONDS": "1",
    "RUNWAY_LEASE_SECONDS": "5",
    "RUNWAY_SWEEP_SECONDS": "2",
    "RUNWAY_CANCEL_GRACE_SECONDS": "3",
    "RUNWAY_RETRY_BASE_SECONDS": "1",
    "RUNWAY_RETRY_MAX_SECONDS": "2",
    "RUNWAY_TICK_SECONDS": "1",
    "RUNWAY_WEBHOOK_RETRY_BASE_SECONDS": "1",
}
