"""Test set-up shared by every tier.

The environment is fixed before anything imports `app`: a Redis database and queue names of
this test session's own, and the short timings SPEC gives for tests. Each test that touches
Postgres gets a fresh database copied from a migrated template.
"""

from __future__ import annotations

import os
import uuid

_SESSION = f"t{os.getpid()}"
os.environ.update(
    {
        "RUNWAY_QUEUE_PREFIX": f"runway-{_SESSION}",
        "RUNWAY_HEARTBEAT_SECONDS": "1",
        "RUNWAY_LEASE_SECONDS": "5",
        "RUNWAY_SWEEP_SECONDS": "2",
        "RUNWAY_CANCEL_GRACE_SECONDS": "3",
        "RUNWAY_RETRY_BASE_SECONDS": "1",
        "RUNWAY_RETRY_MAX_SECONDS": "2",
        "RUNWAY_TICK_SECONDS": "1",
        "RUNWAY_LOG_FORMAT": "console",
        "RUNWAY_LOG_LEVEL": "INFO",
        "RUNWAY_PIPELINES": "tests.pipelines",
    }
)
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/runway_test")

pytest_plugins = ["tests.fixtures.database", "tests.fixtures.services", "tests.fixtures.processes"]

SESSION_ID = _SESSION
UNIQUE = uuid.uuid4().hex[:6]
