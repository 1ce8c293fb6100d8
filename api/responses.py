"""The error responses the routes can answer, declared once for the OpenAPI document; and
answering a model as JSON.

Each declaration matches what api/errors.py, api/deps.py and api/limits.py really send, so a
route lists the statuses it can answer by name: `responses=answers(NOT_FOUND, CONFLICT)`.
"""

from __future__ import annotations

from typing import Any

from fastapi import Response
from pydantic import BaseModel, Field

from app.jsonvalues import MAX_JSON_DEPTH


def json_answer(model: BaseModel, status_code: int = 200) -> Response:
    """A model as the JSON FastAPI would answer for it, serialized once (a route that returns
    a model has it validated again first); the route declares it as `response_model`."""
    return Response(model.model_dump_json(), status_code, media_type="application/json")


class Problem(BaseModel):
    """An error that concerns the request as a whole."""

    detail: str = Field(description="What went wrong, for people.")


class FieldProblem(BaseModel):
    loc: list[str | int] = Field(
        description='Where: `["body", "params"]`, `["query", "cursor"]`, `["header", ...]`.'
    )
    msg: str = Field(description="What is wrong with it, for people.")
    type: str = Field(description="A stable name for the kind of problem.")


class Invalid(BaseModel):
    """One entry per field that is wrong."""

    detail: list[FieldProblem]


Responses = dict[int | str, dict[str, Any]]

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}

UNAUTHORIZED: Responses = {
    401: {
        "model": Problem,
        "description": "No API key, or one that is unknown or revoked.",
        "headers": {
            "WWW-Authenticate": {
                "description": "`Bearer`",
                "required": True,
                "schema": {"type": "string"},
            }
        },
    }
}
NOT_FOUND: Responses = {
    404: {"model": Problem, "description": "No such resource in the caller's workspace."}
}
CONFLICT: Responses = {
    409: {"model": Problem, "description": "The resource's current state forbids this."}
}
INVALID: Responses = {
    422: {
        "model": Invalid,
        "description": "A value is unacceptable; `loc` names the field.",
    }
}
BODY: Responses = {
    400: {"model": Problem, "description": "The body could not be read (not UTF-8 text)."},
    413: {"model": Problem, "description": "The body is larger than `RUNWAY_MAX_BODY_BYTES`."},
    422: {
        "model": Invalid,
        "description": "A value is unacceptable; `loc` names the field. This includes JSON "
        f"that nests deeper than {MAX_JSON_DEPTH} levels below a field.",
    },
}
UNAVAILABLE: Responses = {
    503: {
        "model": Problem,
        "description": "Postgres or the broker did not answer; try again after `Retry-After`.",
        "headers": _RETRY_AFTER,
    }
}
# Every route that needs a key: it is checked against Postgres.
AUTHORIZED: Responses = {**UNAUTHORIZED, **UNAVAILABLE}


def answers(*groups: Responses) -> Responses:
    """The union of response declarations, for a route's `responses=`."""
    merged: Responses = {}
    for group in groups:
        merged.update(group)
    return merged
