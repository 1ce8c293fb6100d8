"""A schedule in words: common cron shapes read as sentences, anything else as its cron."""

from __future__ import annotations

import pytest

from app.schedules.words import describe


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"cron": "0 6 * * 1", "timezone": "Europe/Berlin"}, "every Monday at 06:00 Europe/Berlin"),
        ({"cron": "30 7 * * 1,5"}, "every Monday and Friday at 07:30 UTC"),
        ({"cron": "0 9 * * 1-5", "timezone": "UTC"}, "every weekday at 09:00 UTC"),
        ({"cron": "0 0 * * 7"}, "every Sunday at 00:00 UTC"),
        ({"cron": "15 3 * * *"}, "every day at 03:15 UTC"),
        ({"cron": "0 6 1 * *"}, "on day 1 of every month at 06:00 UTC"),
        ({"cron": "*/15 * * * *"}, "every 15 minutes UTC"),
        ({"cron": "5 * * * *"}, "every hour at :05 UTC"),
        ({"cron": "* * * * *"}, "every minute UTC"),
        ({"cron": "@daily"}, "every day at 00:00 UTC"),
        ({"cron": "0 6,18 * * *"}, "cron 0 6,18 * * * UTC"),
        ({"cron": "0 6 * 1 *"}, "cron 0 6 * 1 * UTC"),
        ({"interval_seconds": 3600}, "every hour"),
        ({"interval_seconds": 900}, "every 15 minutes"),
        ({"interval_seconds": 90}, "every 90 seconds"),
        ({"interval_seconds": 172800}, "every 2 days"),
        (None, "no schedule"),
    ],
)
def test_describe(config: dict[str, object] | None, words: str) -> None:
    assert describe(config) == words
