"""The Celery application. Process-level resources are made in signal handlers, after fork."""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

from celery import Celery, signals
from redbeat.schedulers import acquire_distributed_beat_lock

from app import db, flower, logs
from app.pipelines import registry
from app.settings import get_settings

log = logging.getLogger(__name__)


class Runway(Celery):  # type: ignore[misc]
    """Celery, whose worker and beat programs log what Celery would print (app/banners.py)."""

    @cached_property
    def Worker(self) -> Any:
        return self.subclass_with_self("app.banners:Worker")

    @cached_property
    def Beat(self) -> Any:
        return self.subclass_with_self("app.banners:Beat")


app = Runway("runway")
app.config_from_object("celeryconfig")
# `celery -A app flower` listens on loopback unless told otherwise (see app/flower.py).
flower.listen_on_loopback()
# RedBeat makes a beat that does not lead wait at start-up, blocked, until it takes the
# lock. Runway's scheduler takes the lock itself, never blocking (app/schedules/beat.py), so
# a beat that waits to lead still delivers webhooks and takes over at its next tick.
signals.beat_init.disconnect(acquire_distributed_beat_lock)


@signals.setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    settings = get_settings()
    logs.configure(settings.log_format, loglevel or settings.log_level)


@signals.worker_init.connect
def _load_pipelines(**_: Any) -> None:
    """A worker without its pipelines would fail every run: refuse to start instead.
    (Celery swallows exceptions from signal handlers, but not SystemExit.)"""
    try:
        registry.load(get_settings().pipelines)
    except registry.PluginError as error:
        log.critical("runway worker: %s", error)
        raise SystemExit(1) from error


@signals.worker_process_init.connect
def _init_process(**_: Any) -> None:
    """A prefork child: its own engine, and leave to interrupt or end its own runs."""
    from app.runs import executor  # the executor publishes through this module's app

    db.init()
    executor.supervisor().allow_termination()


@signals.worker_process_shutdown.connect
def _close_process(**_: Any) -> None:
    db.dispose()
