"""The console's pages: each parses, calls the services the HTTP API calls, and renders."""

from __future__ import annotations

from typing import Annotated, Any, get_args
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from api.console.render import TERMINAL, ConsoleRoute, page
from api.console.session import PATH, Session, SessionDep, read
from api.schemas import Cursor, RunStatusName
from app.console import service as console
from app.limits import service as limits
from app.runs import service as runs
from app.states import RunType
from app.streams import service as streams
from app.webhooks import service as webhooks

router = APIRouter(prefix=PATH, include_in_schema=False, route_class=ConsoleRoute)

STREAMS_PER_PAGE = 50
RUNS_PER_PAGE = 50
TICKS_SHOWN = 50
DELIVERIES_SHOWN = 10


@router.get("/sign-in")
def sign_in_page(request: Request, next: str = PATH) -> Response:
    if read(request) is not None:
        return RedirectResponse(PATH, 303)
    return page(request, "sign_in.html", None, next=local_target(next), error=None)


@router.get("")
def overview(request: Request, session: SessionDep) -> Response:
    found = console.overview(session.workspace_id)
    return page(request, "overview.html", session, overview=found, nav="overview")


@router.get("/live/running")
def running_live(request: Request, session: SessionDep) -> Response:
    rows, names = console.running(session.workspace_id)
    return page(request, "_running.html", session, running=rows, names=names)


@router.get("/streams")
def streams_page(
    request: Request,
    session: SessionDep,
    page_: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    offset = (page_ - 1) * STREAMS_PER_PAGE
    found = streams.list_all(session.workspace_id, STREAMS_PER_PAGE + 1, offset)
    shown = found[:STREAMS_PER_PAGE]
    strips = console.strips([stream.row.id for stream in shown])
    return page(
        request,
        "streams.html",
        session,
        streams=shown,
        strips=strips,
        page=page_,
        more=len(found) > STREAMS_PER_PAGE,
        nav="streams",
    )


@router.get("/streams/{stream_id}")
def stream_page(
    request: Request,
    stream_id: UUID,
    session: SessionDep,
    backfilled: Annotated[int | None, Query(ge=0)] = None,
    existing: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    stream = streams.get(session.workspace_id, stream_id)
    return page(
        request,
        "stream.html",
        session,
        **stream_context(session, stream),
        done=(None if backfilled is None else {"created": backfilled, "existing": existing or 0}),
    )


def stream_context(session: Session, stream: streams.Stream) -> dict[str, Any]:
    """What a stream's page shows, whatever form it carries."""
    stream_id = stream.row.id
    latest = runs.page(session.workspace_id, {"stream_id": stream_id}, None, 20)
    return {
        "stream": stream,
        "runs": latest.items,
        "ticks": streams.ticks(session.workspace_id, stream_id, TICKS_SHOWN),
        "recent": console.strips([stream_id])[stream_id],
        "run_token": uuid4().hex,
        "nav": "streams",
        "preview": None,
    }


@router.get("/runs")
def runs_page(
    request: Request,
    session: SessionDep,
    stream_id: Annotated[UUID | None, Query()] = None,
    status: Annotated[RunStatusName | None, Query()] = None,
    run_type: Annotated[RunType | None, Query()] = None,
    cursor: Annotated[Cursor | None, Query()] = None,
    cancelled: Annotated[int | None, Query(ge=0)] = None,
    asked: Annotated[int | None, Query(ge=0)] = None,
    retried: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    wanted = {"stream_id": stream_id, "status": status, "run_type": run_type}
    filters = {name: value for name, value in wanted.items() if value is not None}
    found = runs.page(session.workspace_id, filters, cursor, RUNS_PER_PAGE)
    names = console.stream_names(session.workspace_id, [row.stream_id for row in found.items])
    return page(
        request,
        "runs.html",
        session,
        runs=found.items,
        next_cursor=found.next_cursor,
        filters={name: str(value) for name, value in filters.items()},
        names=names,
        done={"cancelled": cancelled, "asked": asked, "retried": retried},
        statuses=list(get_args(RunStatusName)),
        run_types=[kind.value for kind in RunType],
        nav="runs",
    )


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: UUID, session: SessionDep) -> Response:
    run = runs.get(session.workspace_id, run_id)
    names = console.stream_names(session.workspace_id, [run.stream_id])
    return page(
        request, "run.html", session, run=run, stream_name=names.get(run.stream_id), nav="runs"
    )


@router.get("/runs/{run_id}/live")
def run_live(request: Request, run_id: UUID, session: SessionDep) -> Response:
    """The moving part of a run's page; `Runway-Live: done` once the run has ended."""
    run = runs.get(session.workspace_id, run_id)
    headers = {"Runway-Live": "done"} if run.status in TERMINAL else {}
    return page(request, "_run_live.html", session, headers=headers, run=run)


@router.get("/limits")
def limits_page(request: Request, session: SessionDep) -> Response:
    found = limits.list_all(session.workspace_id)
    return page(request, "limits.html", session, limits=found, nav="limits")


@router.get("/webhooks")
def webhooks_page(request: Request, session: SessionDep) -> Response:
    hooks = webhooks.list_all(session.workspace_id)
    deliveries = {
        hook.id: webhooks.deliveries(session.workspace_id, hook.id, DELIVERIES_SHOWN)
        for hook in hooks
    }
    return page(
        request, "webhooks.html", session, webhooks=hooks, deliveries=deliveries, nav="webhooks"
    )


def local_target(target: str) -> str:
    """Where to go after signing in: a console path, never another site."""
    if target.startswith(PATH) and not target.startswith("//") and "\\" not in target:
        return target
    return PATH
