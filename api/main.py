"""The FastAPI application: `uvicorn api.main:app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.limits import BodyLimit
from api.routes import health, operations, runs, streams
from app import db, logs
from app.pipelines import registry
from app.settings import get_settings

DESCRIPTION = """Trigger, watch and cancel research-stream pipeline runs, and manage the
streams' schedules. Every endpoint but `/health` needs `Authorization: Bearer <key>`."""


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    logs.configure(settings.log_format, settings.log_level)
    registry.load(settings.pipelines)
    db.init()
    yield
    db.dispose()


def create_app() -> FastAPI:
    api = FastAPI(title="Runway", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    api.add_middleware(BodyLimit, max_bytes=get_settings().max_body_bytes)
    errors.install(api)
    for module in (streams, runs, operations, health):
        api.include_router(module.router)
    return api


app = create_app()
