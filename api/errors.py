"""Domain errors to HTTP, in one place. Nothing Runway raises on purpose becomes a 500."""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security.utils import get_authorization_scheme_param
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException
from starlette.routing import Route

from api import deps
from app import db, workspaces
from app.errors import BrokerUnavailable, Conflict, InvalidInput, NotFound, Unauthenticated

log = logging.getLogger(__name__)

# Raised when Redis does not answer, by Runway or by kombu and redis-py under it.
_BROKER_DOWN = (BrokerUnavailable, BrokerOperationalError, RedisConnectionError, RedisTimeoutError)


def install(api: FastAPI) -> None:
    api.add_exception_handler(RequestValidationError, _request_invalid)
    api.add_exception_handler(HTTPException, _http_error)
    api.add_exception_handler(Unauthenticated, _unauthenticated)
    api.add_exception_handler(NotFound, _not_found)
    api.add_exception_handler(Conflict, _conflict)
    api.add_exception_handler(InvalidInput, _invalid)
    api.add_exception_handler(OperationalError, _database_unavailable)
    api.add_exception_handler(DBAPIError, _database_error)
    # The same, from the async routes' psycopg connections (a pool timeout is one of these).
    api.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    api.add_exception_handler(psycopg.DataError, _values_refused)
    api.add_exception_handler(psycopg.IntegrityError, _values_refused)
    for broker_down in _BROKER_DOWN:
        api.add_exception_handler(broker_down, _broker_unavailable)


async def _request_invalid(request: Request, error: Exception) -> JSONResponse:
    """422 naming each field; the offending input is not echoed (it may not even be JSON).
    A route that checks its caller's key in its own statement has not checked it yet: a
    caller without a valid key gets the 401 every other route gives first."""
    assert isinstance(error, RequestValidationError)
    if _checks_key_itself(request):
        refused = await _refused_key(request)
        if refused is not None:
            return await _unauthenticated(request, refused)
    detail = [
        {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
        for item in error.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def _checks_key_itself(request: Request) -> bool:
    """Whether the matched route takes the key unchecked (deps.api_key, not deps.workspace_id)."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    return dependant is not None and any(sub.call is deps.api_key for sub in dependant.dependencies)


async def _refused_key(request: Request) -> Unauthenticated | None:
    """Why the request's key is refused, as deps would say; None if it is a valid key."""
    scheme, key = get_authorization_scheme_param(request.headers.get("Authorization"))
    if scheme.lower() != "bearer" or not key:
        return Unauthenticated(deps.MISSING_KEY)
    async with db.async_autocommit() as conn:
        found = await workspaces.workspace_for_key_async(conn, key)
    return Unauthenticated() if found is None else None


async def _http_error(request: Request, error: Exception) -> JSONResponse | Response:
    """Starlette's answer, but a 405 lists every method of the path in `Allow`, not only
    those of the first route that matched it."""
    assert isinstance(error, HTTPException)
    if error.status_code != 405:
        return await http_exception_handler(request, error)
    path = request.url.path
    methods = {
        method
        for route in request.app.routes
        if isinstance(route, Route) and route.methods and route.path_regex.match(path)
        for method in route.methods
    }
    allow = ", ".join(sorted(methods))
    return JSONResponse({"detail": error.detail}, status_code=405, headers={"Allow": allow})


async def _unauthenticated(_: Request, error: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": str(error)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


async def _not_found(_: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=404)


async def _conflict(_: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=409)


async def _invalid(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, InvalidInput)
    where = [error.location, *(error.field.split(".") if error.field else [])]
    detail = [{"loc": where, "msg": error.message, "type": "value_error"}]
    return JSONResponse({"detail": detail}, status_code=422)


async def _database_unavailable(_: Request, error: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", error)
    return JSONResponse(
        {"detail": "database unavailable, try again shortly"},
        status_code=503,
        headers={"Retry-After": "2"},
    )


async def _broker_unavailable(_: Request, error: Exception) -> JSONResponse:
    log.warning("broker unavailable: %s", error)
    return JSONResponse(
        {"detail": "broker unavailable, try again shortly"},
        status_code=503,
        headers={"Retry-After": "2"},
    )


async def _database_error(request: Request, error: Exception) -> JSONResponse:
    """A last line of defence: input the schemas let through but Postgres refused."""
    assert isinstance(error, DBAPIError)
    if error.connection_invalidated:
        return await _database_unavailable(request, error)
    if isinstance(error, DataError | IntegrityError):
        return await _values_refused(request, error.orig or error)
    raise error


async def _values_refused(_: Request, error: Exception) -> JSONResponse:
    log.warning("database refused a request's values: %s", error)
    return JSONResponse({"detail": f"a value cannot be stored: {error}"}, status_code=422)
