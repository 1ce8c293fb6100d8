"""Pages from Jinja2 templates (autoescaped), and the console's answers to errors: a page
that says what went wrong, never a 500 or a JSON body in the browser."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import select_autoescape
from markupsafe import Markup, escape

from api.console.session import PATH, Session, SignInRequired
from app.errors import Conflict, InvalidInput, NotFound, RunwayError
from app.schedules.words import describe

HERE = Path(__file__).parent
STATIC = HERE / "static"
TERMINAL = ("completed", "failed", "cancelled")
FRAGMENT = "Runway-Fragment"  # sent by the script that refreshes the live parts of a page
LIVE = ("pending", "running", "retrying")

# Only this origin's script and styles; no framing, no form posting elsewhere. Inline style
# attributes are allowed: progress bars set their width with one.
POLICY = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.autoescape = select_autoescape(default=True, default_for_string=True)


def _time(moment: datetime | None) -> Markup:
    """A `<time>` in UTC; the page's script shows it in the browser's zone, UTC on hover."""
    if moment is None:
        return Markup('<span class="muted">—</span>')
    utc = moment.astimezone(UTC)
    return Markup('<time datetime="{}">{}</time>').format(
        utc.isoformat(), utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    )


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _percent(progress: Any) -> float:
    if not isinstance(progress, dict):
        return 0.0
    value = progress.get("percent")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(0.0, min(100.0, float(value)))
    return 0.0


templates.env.filters.update(time=_time, pretty=_pretty, percent=_percent, words=describe)
templates.env.globals.update(TERMINAL=TERMINAL, LIVE=LIVE, quote=quote, escape=escape)


def page(
    request: Request,
    name: str,
    session: Session | None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response:
    return templates.TemplateResponse(
        request,
        name,
        {"session": session, **context},
        status_code=status_code,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": POLICY,
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "same-origin",
            **(headers or {}),
        },
    )


def problem(request: Request, code: int, title: str, detail: str) -> Response:
    return page(request, "problem.html", None, code, title=title, detail=detail)


def _validation(request: Request, error: RequestValidationError) -> Response:
    """A bad id in the path is a page not found; anything else, a form to correct."""
    if any(item["loc"][:1] == ("path",) for item in error.errors()):
        return problem(request, 404, "Not found", "There is no such page here.")
    fields = "; ".join(
        f"{'.'.join(str(part) for part in item['loc'][1:])}: {item['msg']}"
        for item in error.errors()
    )
    return problem(request, 422, "That did not work", fields)


def _sign_in(request: Request) -> Response:
    if request.headers.get(FRAGMENT):  # the page's script: it stops refreshing
        return Response(status_code=status.HTTP_401_UNAUTHORIZED)
    target = request.url.path if request.method == "GET" else PATH
    return RedirectResponse(
        f"{PATH}/sign-in?next={quote(target, safe='/')}", status.HTTP_303_SEE_OTHER
    )


class ConsoleRoute(APIRoute):
    """A route whose failures are pages: sign-in, not found, conflict, invalid input."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except (SignInRequired, RunwayError, RequestValidationError, HTTPException) as error:
                return _failure(request, error)

        return answer


def _failure(request: Request, error: Exception) -> Response:
    """The page for what went wrong; errors it does not know go on to the API's handlers."""
    if isinstance(error, SignInRequired):
        return _sign_in(request)
    if isinstance(error, NotFound):
        return problem(request, 404, "Not found", "Nothing with that id here.")
    if isinstance(error, Conflict):
        return problem(request, 409, "That cannot be done now", str(error))
    if isinstance(error, InvalidInput):
        return problem(request, 422, "That did not work", str(error))
    if isinstance(error, RequestValidationError):
        return _validation(request, error)
    if isinstance(error, HTTPException):
        return problem(request, error.status_code, "Refused", str(error.detail))
    raise error
