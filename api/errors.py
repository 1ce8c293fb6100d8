"""Domain errors to HTTP, in one place. Nothing Runway raises on purpose becomes a 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from app.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)


def install(api: FastAPI) -> None:
    api.add_exception_handler(RequestValidationError, _request_invalid)
    api.add_exception_handler(NotFound, _not_found)
    api.add_exception_handler(Conflict, _conflict)
    api.add_exception_handler(InvalidInput, _invalid)
    api.add_exception_handler(OperationalError, _database_unavailable)
    api.add_exception_handler(DBAPIError, _database_error)


async def _request_invalid(_: Request, error: Exception) -> JSONResponse:
    """422 naming each field; the offending input is not echoed (it may not even be JSON)."""
    assert isinstance(error, RequestValidationError)
    detail = [
        {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
        for item in error.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


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
    """A last line of defence: input the schemas let through but Postgres refused."""
    assert isinstance(error, DBAPIError)
    if error.connection_invalidated:
        return await _database_unavailable(request, error)
    if isinstance(error, DataError | IntegrityError):
        log.warning("database refused a request's values: %s", error.orig)
        return JSONResponse({"detail": f"a value cannot be stored: {error.orig}"}, status_code=422)
    raise error
