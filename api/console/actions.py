"""The console's forms: sign in and out, and every action. Each one that changes something
needs the session's CSRF token and this origin (`ActingDep`); each ends in a redirect to the
page that shows its outcome, or in a page saying why it could not be done."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from api.console import session
from api.console.pages import local_target, stream_context
from api.console.render import ConsoleRoute, page
from api.console.session import PATH, ActingDep
from app.console import service as console
from app.errors import InvalidInput
from app.jsonvalues import storable_json
from app.runs import bulk
from app.runs import service as runs
from app.schedules import backfill
from app.states import LIVE, RunStatus, RunType
from app.streams import service as streams

router = APIRouter(prefix=PATH, include_in_schema=False, route_class=ConsoleRoute)

OptionalText = Annotated[str, Form(max_length=200)]
Token = Annotated[str, Form(pattern=r"^[0-9a-f]{32}$")]


def _to(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


@router.post("/sign-in")
def sign_in(
    request: Request,
    key: Annotated[str, Form(max_length=500)],
    next: Annotated[str, Form(max_length=2000)] = PATH,
) -> Response:
    session.check_origin(request)  # no session yet: what the browser says is the guard
    signed_in = console.sign_in(key)
    if signed_in is None:
        error = "That key is unknown or revoked."
        return page(request, "sign_in.html", None, 401, next=local_target(next), error=error)
    response = _to(local_target(next))
    session.start(request, response, signed_in)
    return response


@router.post("/sign-out")
def sign_out(request: Request, _: ActingDep) -> Response:
    response = _to(f"{PATH}/sign-in")
    session.end(request, response)
    return response


@router.post("/streams/{stream_id}/run")
def run_now(
    stream_id: UUID, signed: ActingDep, token: Token, params: Annotated[str, Form()] = ""
) -> Response:
    """A manual run; the form's token makes a second press of the same form the same run."""
    made = runs.create(
        signed.workspace_id,
        stream_id,
        RunType.MANUAL,
        _params(params),
        idempotency_key=f"console:{token}",
    )
    return _to(f"{PATH}/runs/{made.run.id}")


def _params(text: str) -> dict[str, Any] | None:
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidInput("params", 'not JSON: write an object, e.g. {"seconds": 5}') from None
    if not isinstance(value, dict):
        raise InvalidInput("params", 'must be a JSON object, e.g. {"seconds": 5}')
    problem = storable_json(value)
    if problem is not None:
        raise InvalidInput("params", problem)
    return value


@router.post("/streams/{stream_id}/pause")
def pause(stream_id: UUID, signed: ActingDep) -> Response:
    streams.update(signed.workspace_id, stream_id, {"schedule_config": {"enabled": False}})
    return _to(f"{PATH}/streams/{stream_id}")


@router.post("/streams/{stream_id}/resume")
def resume(stream_id: UUID, signed: ActingDep) -> Response:
    streams.update(signed.workspace_id, stream_id, {"schedule_config": {"enabled": True}})
    return _to(f"{PATH}/streams/{stream_id}")


@router.post("/streams/{stream_id}/backfill")
def backfill_stream(
    request: Request,
    stream_id: UUID,
    signed: ActingDep,
    start: Annotated[str, Form(alias="from", max_length=64)],
    end: Annotated[str, Form(alias="to", max_length=64)],
    confirm: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """A dry run first: its page shows the slots and asks to confirm; then the backfill."""
    begin, until = _moment("from", start), _moment("to", end)
    if confirm != "yes":
        preview = backfill.backfill(signed.workspace_id, stream_id, begin, until, dry_run=True)
        stream = streams.get(signed.workspace_id, stream_id)
        # Confirming creates what the dry run showed: up to its last slot, not slots that
        # come due (or that `to` reaches) meanwhile.
        last = max(preview.slots, default=None)
        confirm_end = end if last is None else (last + timedelta(microseconds=1)).isoformat()
        context = stream_context(signed, stream) | {"preview": preview, "confirm_end": confirm_end}
        return page(request, "stream.html", signed, **context, start=start, end=end, done=None)
    done = backfill.backfill(signed.workspace_id, stream_id, begin, until)
    query = urlencode({"backfilled": done.created, "existing": done.existing})
    return _to(f"{PATH}/streams/{stream_id}?{query}")


def _moment(field: str, text: str) -> datetime:
    """An ISO 8601 time; one without an offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(field, "not a time: write e.g. 2026-11-20T06:00Z") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@router.post("/runs/{run_id}/cancel")
def cancel(run_id: UUID, signed: ActingDep) -> Response:
    runs.cancel(signed.workspace_id, run_id)
    return _to(f"{PATH}/runs/{run_id}")


@router.post("/runs/{run_id}/retry")
def retry(run_id: UUID, signed: ActingDep) -> Response:
    made = runs.retry(signed.workspace_id, run_id)
    return _to(f"{PATH}/runs/{made.id}")


@router.post("/runs/cancel")
def cancel_matching(
    signed: ActingDep,
    stream_id: OptionalText = "",
    status: OptionalText = "",
    run_type: OptionalText = "",
) -> Response:
    """Every run the list's filter selects (a filter is required), at once or asked to stop."""
    selection = _selection(stream_id, status, run_type)
    if selection.empty:
        raise InvalidInput("filter", "filter the runs first: by stream, status or type")
    if not selection.statuses:
        selection = bulk.Selection(selection.stream_id, tuple(LIVE), selection.run_type)
    done = bulk.cancel(signed.workspace_id, selection)
    filters = _filters(stream_id, status, run_type)
    query = urlencode({**filters, "cancelled": done.cancelled, "asked": done.cancel_requested})
    return _to(f"{PATH}/runs?{query}")


@router.post("/runs/retry")
def retry_matching(
    signed: ActingDep,
    stream_id: OptionalText = "",
    status: OptionalText = "",
    run_type: OptionalText = "",
) -> Response:
    done = bulk.retry(signed.workspace_id, _selection(stream_id, status, run_type))
    query = urlencode({**_filters(stream_id, status, run_type), "retried": done.created})
    return _to(f"{PATH}/runs?{query}")


def _selection(stream_id: str, status: str, run_type: str) -> bulk.Selection:
    try:
        return bulk.Selection(
            stream_id=UUID(stream_id) if stream_id else None,
            statuses=(RunStatus(status),) if status else (),
            run_type=RunType(run_type) if run_type else None,
        )
    except ValueError:
        raise InvalidInput("filter", "not a filter the runs page makes") from None


def _filters(stream_id: str, status: str, run_type: str) -> dict[str, str]:
    given = {"stream_id": stream_id, "status": status, "run_type": run_type}
    return {name: value for name, value in given.items() if value}
