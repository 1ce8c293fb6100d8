"""Whether Postgres and the broker answer, each within a short timeout."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from app import db
from app.settings import get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    database: bool
    broker: bool

    @property
    def ok(self) -> bool:
        return self.database and self.broker

    def as_dict(self) -> dict[str, str]:
        return {
            "status": "ok" if self.ok else "degraded",
            "database": "ok" if self.database else "unavailable",
            "broker": "ok" if self.broker else "unavailable",
        }


def database_ok() -> bool:
    try:
        with db.engine().connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except SQLAlchemyError as error:
        log.warning("health: database: %s", error)
        return False


def broker_ok() -> bool:
    client = redis.Redis.from_url(
        get_settings().redis_url, socket_timeout=1, socket_connect_timeout=1
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError) as error:
        log.warning("health: broker: %s", error)
        return False
    finally:
        client.close()


def check() -> Report:
    return Report(database=database_ok(), broker=broker_ok())
