"""Test set-up shared by every tier.

The environment is fixed before anything imports `app`: a Redis database and queue names of
this test session's own, and the short timings SPEC gives for tests. Each test that touches
Postgres gets a fresh database copied from a migrated template.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.engine import make_url

from app.settings import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL
from tests.timings import TEST_TIMINGS

_SESSION = f"t{os.getpid()}"
os.environ.update(
    {
        "RUNWAY_QUEUE_PREFIX": f"runway-{_SESSION}",
        **TEST_TIMINGS,
        "RUNWAY_LOG_FORMAT": "console",
        "RUNWAY_LOG_LEVEL": "INFO",
        "RUNWAY_PIPELINES": "tests.pipelines",
        # Webhook receivers in tests listen on 127.0.0.1; the refusal is tested on its own.
        "RUNWAY_WEBHOOK_ALLOW_PRIVATE": "true",
    }
)
# Only the servers are taken from the environment: tests create and drop databases named
# runway_test_*, and flush Redis database 14 (RUNWAY_TEST_REDIS_DB, to run two sessions at
# once), never the ones the URLs name.
_database = make_url(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
os.environ["DATABASE_URL"] = _database.set(database="runway_test").render_as_string(False)
_redis = urlsplit(os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))
os.environ["REDIS_URL"] = urlunsplit(
    _redis._replace(path="/" + os.environ.get("RUNWAY_TEST_REDIS_DB", "14"))
)
os.environ.pop("REDBEAT_REDIS_URL", None)

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.services",
    "tests.fixtures.processes",
    "tests.fixtures.proxy",
    "tests.fixtures.redis_server",
    "tests.fixtures.clock",
    "tests.fixtures.secrets",
    "tests.fixtures.receivers",
    "tests.fixtures.browser",  # one session's Chromium, whichever modules drive it
]
