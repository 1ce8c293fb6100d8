"""One SQLAlchemy engine per process, made after fork; each transaction a unit of work."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import _cmodule as psycopg_cmodule
from psycopg.abc import AdaptContext
from psycopg.adapt import Loader
from psycopg.pq import Format
from psycopg.rows import namedtuple_row
from psycopg.types.datetime import TimestamptzBinaryLoader, TimestamptzLoader
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.engine import Connection, Engine, make_url

from app.settings import get_settings


def _fastest(loader: type[Loader]) -> type[Loader]:
    """psycopg's C implementation of a loader when it is installed (psycopg[binary])."""
    found: type[Loader] = getattr(psycopg_cmodule._psycopg, loader.__name__, loader)
    return found


class _UtcLoader(Loader):
    """A timestamptz in UTC, whatever the session's TimeZone: Python adds and subtracts
    times of one zone by their wall clocks, which DST would skew. It wraps psycopg's own
    loader (its C one, several times faster than the Python one a subclass would get)."""

    parser: type[Loader] = _fastest(TimestamptzLoader)

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        self._parse = self.parser(oid, context).load

    def load(self, data: Any) -> Any:
        return self._parse(data).astimezone(UTC)


class _UtcBinaryLoader(_UtcLoader):
    format = Format.BINARY
    parser = _fastest(TimestamptzBinaryLoader)


psycopg.adapters.register_loader("timestamptz", _UtcLoader)
psycopg.adapters.register_loader("timestamptz", _UtcBinaryLoader)

POOL_SIZE = 5


@dataclass
class _ProcessEngine:
    engine: Engine | None = None
    autocommit: Engine | None = None
    pid: int | None = None
    url: str | None = None
    pool_size: int = POOL_SIZE


_lock = threading.Lock()
_current = _ProcessEngine()


def init(url: str | None = None, pool_size: int | None = None) -> Engine:
    """Create this process's engine (again, if the URL changed or the process forked).

    `pool_size`: connections kept open per engine; a process that uses more at once opens
    and closes the others each time, so it should be at least the process's concurrency."""
    url = url or get_settings().database_url
    pool_size = pool_size or _current.pool_size
    with _lock:
        made = (_current.pid, _current.url, _current.pool_size)
        if _current.engine is not None and made == (os.getpid(), url, pool_size):
            return _current.engine
        _forget(close=_current.pid == os.getpid())
        _current.engine = create_engine(url, pool_size=pool_size)
        _current.pid, _current.url, _current.pool_size = os.getpid(), url, pool_size
        # Autocommit and no reset on return: nothing is ever left open on these connections.
        _current.autocommit = create_engine(
            url, pool_size=pool_size, isolation_level="AUTOCOMMIT", pool_reset_on_return=None
        )
        return _current.engine


def _forget(close: bool) -> None:
    """Drop this process's engines; in a forked child the sockets are the parent's: never close."""
    for engine_ in (_current.engine, _current.autocommit):
        if engine_ is not None:
            engine_.dispose(close=close)
    _current.engine = _current.autocommit = None


# Rows an executemany INSERT ... RETURNING sends as ONE statement; more make several, and
# a transaction must change runs in one statement (app/runs/store.py).
INSERT_PAGE = 1000


# How every connection is opened, by the engines and by the API's async pool.
CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 5,
    "application_name": "runway",
    # A peer that vanished without a word (a cut network) fails the call instead of hanging
    # it forever.
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


def create_engine(url: str, pool_size: int = POOL_SIZE, **options: Any) -> Engine:
    return sa.create_engine(
        url,
        insertmanyvalues_page_size=INSERT_PAGE,
        pool_size=pool_size,
        max_overflow=10,
        # No pre-ping: it costs a round trip per checkout on the hot path. A connection broken
        # by a Postgres restart fails once and is discarded (see hot_connection too).
        pool_recycle=1800,
        connect_args=CONNECT_ARGS,
        **options,
    )


def engine() -> Engine:
    """The engine of this process; a forked child gets its own, never its parent's sockets."""
    current = _current.engine
    if current is None or _current.pid != os.getpid():
        return init(_current.url)
    return current


def dispose() -> None:
    with _lock:
        _forget(close=_current.pid == os.getpid())


@contextmanager
def unit_of_work() -> Iterator[Connection]:
    """One transaction: commits when the block ends, rolls back if it raises."""
    with engine().begin() as connection:
        yield connection


@contextmanager
def autocommit() -> Iterator[Connection]:
    """A connection in autocommit: each statement is its own transaction, in one round trip
    (no BEGIN, no COMMIT). For reads, and for a write that is a single statement."""
    engine()
    assert _current.autocommit is not None
    with _current.autocommit.connect() as connection:
        yield connection


@contextmanager
def hot_connection() -> Iterator[psycopg.Connection[Any]]:
    """A raw psycopg connection in autocommit, for the run hot path (claim, heartbeat, finish).

    Each of those writes is one conditional UPDATE, so each is its own durable transaction:
    one round trip instead of three (BEGIN, statement, COMMIT), and no ORM layer in between.
    A connection that fails is invalidated so the pool never hands it out again; every
    failure to reach Postgres surfaces as psycopg.OperationalError.
    """
    engine()
    assert _current.autocommit is not None
    try:
        connection = _current.autocommit.connect()
    except sa.exc.DBAPIError as error:  # no new connection: surface the driver's error
        raise error.orig from error  # type: ignore[misc]
    with connection:
        raw = connection.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        try:
            yield raw
        except psycopg.OperationalError:
            connection.invalidate()
            raise


_PSYCOPG = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]


def psycopg_sql(statement: sa.sql.ClauseElement) -> str:
    """A statement's SQL as psycopg takes it (`%(name)s` for each bindparam), compiled once
    at import, for the stores' async and hot-path functions."""
    return str(statement.compile(dialect=_PSYCOPG))


# The API's busiest routes run on its event loop: psycopg's async connections, in autocommit,
# from a pool the app opens at startup. Rows come back as named tuples: attributes and
# `_asdict()`, as SQLAlchemy's rows have.
AsyncConnection = psycopg.AsyncConnection[Any]
# How long a request waits for a connection before it is a 503 (all busy, or Postgres down),
# and how long the pool tries to replace a lost connection before it leaves the next one to
# the next request that needs it (so a restored Postgres is used at once, not after psycopg
# pool's growing backoff).
ASYNC_CHECKOUT_SECONDS = 2.0
ASYNC_CONNECT_SECONDS = 2
ASYNC_MAX_WAITING = 100


@dataclass
class _AsyncPool:
    pool: AsyncConnectionPool[AsyncConnection] | None = None


_async = _AsyncPool()


async def open_async_pool(size: int, url: str | None = None) -> None:
    """Open this process's async pool (in its event loop): up to `size` connections, 2 kept
    when idle. It does not wait for them: a Postgres that is down at startup fails
    requests, not the start."""
    await close_async_pool()
    database = make_url(url or get_settings().database_url).set(drivername="postgresql")
    pool: AsyncConnectionPool[AsyncConnection] = AsyncConnectionPool(
        database.render_as_string(hide_password=False),
        min_size=min(2, size),
        max_size=size,
        kwargs={
            **CONNECT_ARGS,
            "connect_timeout": ASYNC_CONNECT_SECONDS,
            "autocommit": True,
            "row_factory": namedtuple_row,
        },
        timeout=ASYNC_CHECKOUT_SECONDS,
        reconnect_timeout=ASYNC_CHECKOUT_SECONDS,
        # Beyond this many requests waiting for a connection, the next is a 503 at once.
        max_waiting=ASYNC_MAX_WAITING,
        max_lifetime=1800,
        open=False,
    )
    await pool.open(wait=False)
    _async.pool = pool


async def close_async_pool() -> None:
    pool, _async.pool = _async.pool, None
    if pool is not None:
        await pool.close()


@asynccontextmanager
async def async_autocommit() -> AsyncIterator[AsyncConnection]:
    """An async connection in autocommit: each statement its own transaction, one round trip.
    No connection within ASYNC_CHECKOUT_SECONDS raises psycopg_pool.PoolTimeout, a
    psycopg.OperationalError like every other failure to reach Postgres. A connection found
    broken empties the pool of the others, so one request, not one per idle connection,
    learns that Postgres restarted."""
    pool = _async.pool
    if pool is None:
        raise RuntimeError("the async pool is not open: the app opens it at startup")
    async with pool.connection() as connection:
        try:
            yield connection
        except psycopg.OperationalError:
            if connection.broken:  # Postgres restarted: its other idle connections are dead too
                await pool.drain()
            raise
