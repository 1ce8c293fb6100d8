"""One SQLAlchemy engine per process, made after fork; each transaction a unit of work."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from app.settings import get_settings


@dataclass
class _ProcessEngine:
    engine: Engine | None = None
    pid: int | None = None
    url: str | None = None


_lock = threading.Lock()
_current = _ProcessEngine()


def init(url: str | None = None) -> Engine:
    """Create this process's engine (again, if the URL changed or the process forked)."""
    url = url or get_settings().database_url
    with _lock:
        if _current.engine is not None and (_current.pid, _current.url) == (os.getpid(), url):
            return _current.engine
        if _current.engine is not None:
            # In a forked child the pool's sockets belong to the parent: forget, never close.
            _current.engine.dispose(close=_current.pid == os.getpid())
        _current.engine, _current.pid, _current.url = create_engine(url), os.getpid(), url
        return _current.engine


def create_engine(url: str) -> Engine:
    return sa.create_engine(
        url,
        pool_size=5,
        max_overflow=10,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5, "application_name": "runway"},
    )


def engine() -> Engine:
    """The engine of this process; a forked child gets its own, never its parent's sockets."""
    current = _current.engine
    if current is None or _current.pid != os.getpid():
        return init(_current.url)
    return current


def dispose() -> None:
    with _lock:
        if _current.engine is not None and _current.pid == os.getpid():
            _current.engine.dispose()
        _current.engine = None


@contextmanager
def unit_of_work() -> Iterator[Connection]:
    """One transaction: commits when the block ends, rolls back if it raises."""
    with engine().begin() as connection:
        yield connection
