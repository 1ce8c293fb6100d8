"""The web console at /ui: server-rendered pages over the same services as the HTTP API,
with a little script for the live parts. Not part of the OpenAPI document."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.console import actions, pages
from api.console.render import STATIC
from api.console.session import PATH


def install(api: FastAPI) -> None:
    api.include_router(pages.router)
    api.include_router(actions.router)
    api.mount(f"{PATH}/static", StaticFiles(directory=STATIC), name="console-static")
