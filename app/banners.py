"""Celery's worker and beat programs, saying what Celery prints as log lines instead.

Celery prints its start-up banners, and the worker its shutdown notices, straight to the
terminal. With JSON logs, every line a process writes must be one JSON object, so these
programs log the same information (URLs masked) through the process's logging instead; the
console format keeps Celery's own banners.
"""

from __future__ import annotations

import logging
from typing import Any

import celery.apps.worker
from celery import VERSION_BANNER
from celery.apps.beat import Beat as CeleryBeat
from celery.apps.worker import Worker as CeleryWorker

from app import logs
from app.settings import get_settings

log = logging.getLogger("celery.apps.worker")
beat_log = logging.getLogger("celery.beat")


def _json() -> bool:
    return get_settings().log_format == "json"


def _early_logging() -> None:
    """Logging before Celery sets it up, so warnings it gives first are log lines too."""
    settings = get_settings()
    logs.configure(settings.log_format, settings.log_level)


def _say(message: str, *_: Any) -> None:
    """What the worker prints in its signal handlers ("worker: Warm shutdown ..."), logged."""
    log.warning("%s", message.strip())


class Worker(CeleryWorker):  # type: ignore[misc]
    def on_before_init(self, **kwargs: Any) -> None:
        if _json():
            _early_logging()
            celery.apps.worker.safe_say = _say
            # What a plug-in prints becomes a log line too (Celery leaves this to whoever
            # owns logging).
            self.app.log.redirect_stdouts(self.app.conf.worker_redirect_stdouts_level)
        super().on_before_init(**kwargs)

    def emit_banner(self) -> None:
        if not _json():
            super().emit_banner()
            return
        startup = [line.strip() for line in self.startup_info(artlines=False).splitlines()]
        log.info(
            "%s v%s starting",
            self.hostname,
            VERSION_BANNER,
            extra={
                "startup": [logs.mask(line) for line in startup if line],
                "tasks": sorted(name for name in self.app.tasks if not name.startswith("celery.")),
            },
        )


class Beat(CeleryBeat):  # type: ignore[misc]
    quiet: bool

    def run(self) -> None:
        if self.quiet or not _json():
            super().run()
            return
        _early_logging()
        self.quiet = True  # no banner on the terminal: this line says the same
        with self.app.connection() as connection:
            broker = connection.as_uri()
        beat_log.info(
            "celery beat v%s starting",
            VERSION_BANNER,
            extra={
                "broker": logs.mask(broker),
                "scheduler": str(self.scheduler_cls),
                "max_interval": self.max_interval or self.app.conf.beat_max_loop_interval,
            },
        )
        super().run()
