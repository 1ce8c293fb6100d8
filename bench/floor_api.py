"""The floor for bench/api.py: a bare FastAPI app doing the SQL and the Redis write that
`POST /runs` and `GET /runs/{id}` must do, the cheapest honest way, on the same driver
(psycopg 3) and under the same server settings as Runway's API.

    uvicorn bench.floor_api:app   (started by `python -m bench.api`, not by hand)

- `POST /runs`: the API-key lookup; one INSERT ... SELECT that reads the stream (and its
  workspace's cap) and writes the run, committed on its own (autocommit: one round trip);
  an LPUSH of a message as large as Runway's (`FLOOR_MESSAGE_BYTES`) to `FLOOR_QUEUE`.
- `GET /runs/{id}`: the API-key lookup and the one SELECT.

Each answers the run row as JSON, 401 / 404 as Runway does. Settings: DATABASE_URL,
REDIS_URL, FLOOR_QUEUE, FLOOR_MESSAGE_BYTES, FLOOR_POOL (connections per process).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import psycopg
import redis.asyncio as redis
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import Response
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel

KEY_SQL = "SELECT workspace_id FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL"
INSERT_SQL = """
INSERT INTO pipeline_executions (workspace_id, stream_id, run_type, pipeline, params,
    max_attempts, priority, limit_keys, gated, waiting_for)
SELECT s.workspace_id, s.id, %(run_type)s, s.pipeline, s.params || %(params)s, 3, s.priority,
    s.limit_keys, w.max_concurrent_runs IS NOT NULL OR cardinality(s.limit_keys) > 0,
    CASE WHEN w.max_concurrent_runs IS NOT NULL
        THEN jsonb_build_object('kind', 'workspace', 'key', NULL, 'until', NULL)
    WHEN cardinality(s.limit_keys) > 0
        THEN jsonb_build_object('kind', 'concurrency', 'key', s.limit_keys[1], 'until', NULL)
    END
FROM research_streams s JOIN workspaces w ON w.id = s.workspace_id
WHERE s.id = %(stream_id)s AND s.workspace_id = %(workspace_id)s
RETURNING *
"""
GET_SQL = "SELECT * FROM pipeline_executions WHERE id = %s AND workspace_id = %s"


class RunCreate(BaseModel):
    stream_id: UUID
    run_type: str = "manual"
    params: dict[str, Any] | None = None


class Backends:
    """Postgres connections in autocommit, handed out one request at a time; a Redis client."""

    def __init__(self) -> None:
        self.idle: asyncio.Queue[psycopg.AsyncConnection[dict[str, Any]]] = asyncio.Queue()
        self.broker = redis.Redis()

    async def open(self, url: str, size: int, broker_url: str) -> None:
        self.broker = redis.Redis.from_url(broker_url)
        for _ in range(size):
            connection = await psycopg.AsyncConnection.connect(
                url, autocommit=True, row_factory=dict_row
            )
            self.idle.put_nowait(connection)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        connection = await self.idle.get()
        try:
            yield connection
        finally:
            self.idle.put_nowait(connection)


backends = Backends()
MESSAGE = b"x" * int(os.environ.get("FLOOR_MESSAGE_BYTES", "1500"))
QUEUE = os.environ.get("FLOOR_QUEUE", "floor")


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    url = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    await backends.open(url, int(os.environ.get("FLOOR_POOL", "10")), os.environ["REDIS_URL"])
    yield
    await backends.broker.aclose()


app = FastAPI(lifespan=lifespan)


async def _workspace(
    connection: psycopg.AsyncConnection[dict[str, Any]], authorization: str | None
) -> UUID:
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise HTTPException(401, "missing API key")
    digest = hashlib.sha256(key.encode()).hexdigest()
    row = await (await connection.execute(KEY_SQL, (digest,))).fetchone()
    if row is None:
        raise HTTPException(401, "invalid or revoked API key")
    workspace_id: UUID = row["workspace_id"]
    return workspace_id


def _json(row: dict[str, Any], status_code: int) -> Response:
    return Response(json.dumps(row, default=str), status_code, media_type="application/json")


@app.post("/runs")
async def create_run(body: RunCreate, authorization: str | None = Header(None)) -> Response:
    async with backends.connection() as connection:
        workspace_id = await _workspace(connection, authorization)
        values = {
            "run_type": body.run_type,
            "params": Jsonb(body.params or {}),
            "stream_id": body.stream_id,
            "workspace_id": workspace_id,
        }
        row = await (await connection.execute(INSERT_SQL, values)).fetchone()
    if row is None:
        raise HTTPException(404, f"stream {body.stream_id} not found")
    await backends.broker.lpush(QUEUE, MESSAGE)
    return _json(row, 202)


@app.get("/runs/{run_id}")
async def get_run(run_id: UUID, authorization: str | None = Header(None)) -> Response:
    async with backends.connection() as connection:
        workspace_id = await _workspace(connection, authorization)
        row = await (await connection.execute(GET_SQL, (run_id, workspace_id))).fetchone()
    if row is None:
        raise HTTPException(404, f"run {run_id} not found")
    return _json(row, 200)
