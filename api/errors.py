"""Domain errors to HTTP, in one place. Nothing Runway raises on purpose becomes a 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError

from app.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)


def install(api: FastAPI) -> None:
    api.add_exception_handler(NotFound, _not_found)
    api.add_exception_handler(Conflict, _conflict)
    api.add_exception_handler(InvalidInput, _invalid)
    api.add_exception_handler(OperationalError, _database_unavailable)
    api.add_exception_handler(DBAPIError, _database_error)


async def _not_found(_: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=404)


async def _conflict(_: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=409)


async def _invalid(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, InvalidInput)
    where = [error.location, *error.field.split(".")]
    detail = [{"loc": where, "msg": error.message, "type": "value_error"}]
    return JSONResponse({"detail": detail}, status_code=422)


async def _database_unavailable(_: Request, error: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", error)
    return JSONResponse(
        {"detail": "database unavailable, try again shortly"},
        status_code=503,
        headers={"Retry-After": "2"},
    )


async def _database_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, DBAPIError)
    if error.connection_invalidated:
        return await _database_unavailable(request, error)
    raise error
