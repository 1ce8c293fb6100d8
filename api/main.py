"""The FastAPI application: `uvicorn api.main:app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI

from api import console, docs, errors, openapi
from api.limits import BodyLimit, JsonDepthLimit
from api.routes import health, limits, operations, runs, streams, webhooks
from app import db, logs
from app.jsonvalues import MAX_JSON_DEPTH
from app.pipelines import registry
from app.runs import dispatch
from app.settings import get_settings

DESCRIPTION = f"""Trigger, watch and cancel research-stream pipeline runs, and manage the
streams' schedules. Every endpoint but `/health` needs `Authorization: Bearer <key>`.

JSON in a request (`params`, `schedule_config`) nests at most {MAX_JSON_DEPTH} levels, and its
text holds no NUL character and no lone surrogate; anything else is a 422 naming the field.
A request body may be at most `RUNWAY_MAX_BODY_BYTES` (1 MiB by default); a larger one is a
413.

Errors are JSON: `{{"detail": "..."}}`, or for a 422 `{{"detail": [{{"loc", "msg", "type"}}]}}`
with one entry per field. A 503 (Postgres or the broker did not answer) carries
`Retry-After`."""


# Requests that run at once in one API process, and the database connections the process
# keeps open for them: as many in each of its pools (the event loop's, for the API key and
# the busiest routes; the threads', for the rest), so that none is opened per request.
CONCURRENT_REQUESTS = 10


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    registry.load(settings.pipelines)
    to_thread.current_default_thread_limiter().total_tokens = CONCURRENT_REQUESTS
    db.init(pool_size=CONCURRENT_REQUESTS)
    # Whatever fails to start, what did start is closed: an open pool left behind would keep
    # the process from exiting.
    async with AsyncExitStack() as opened:
        opened.callback(db.dispose)
        await db.open_async_pool(CONCURRENT_REQUESTS)
        opened.push_async_callback(db.close_async_pool)
        await dispatch.open_async()
        opened.push_async_callback(dispatch.close_async)
        yield


def create_app() -> FastAPI:
    # uvicorn sets up its logging before it imports the app, and lifespan comes too late for
    # its first lines: take over logging here, so that every line is in Runway's format.
    logs.configure_from_settings()
    api = FastAPI(
        title="Runway",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    api.add_middleware(JsonDepthLimit)  # inside BodyLimit: it only ever holds a bounded body
    api.add_middleware(BodyLimit, max_bytes=get_settings().max_body_bytes)
    errors.install(api)
    # Routes are matched in order: the busiest first.
    for module in (runs, streams, limits, webhooks, operations, health):
        api.include_router(module.router)
    openapi.install(api)
    docs.install(api)
    console.install(api)
    return api


app = create_app()
