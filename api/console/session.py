"""The console's session: a signed cookie naming the API key signed in with, and the guard of
every state-changing form against requests from other sites.

The cookie holds the key's id (never the key), its workspace and a CSRF token, signed with
itsdangerous (as Starlette's own sessions are) and dated: it is HttpOnly, SameSite=Strict,
Secure over https, and lasts SESSION_SECONDS. Each request checks that the key is still live,
so revoking it ends its sessions. A form that changes something must carry the session's CSRF
token, and come from this origin by what the browser says (Sec-Fetch-Site, Origin).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit
from uuid import UUID

from fastapi import Depends, HTTPException, Request, Response, status
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.console import service

COOKIE = "runway_console"
PATH = "/ui"
SESSION_SECONDS = 12 * 3600
_SALT = "runway.console.session"


class SignInRequired(Exception):
    """No live session: the console answers with its sign-in page."""


@dataclass(frozen=True)
class Session:
    key_id: UUID
    workspace_id: UUID
    workspace: str  # its name
    csrf: str


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(service.signing_secret(), salt=_SALT)


def start(request: Request, response: Response, signed_in: service.SignedIn) -> None:
    """Sign the browser in: a new cookie, with a new CSRF token."""
    payload = {
        "k": str(signed_in.key_id),
        "w": str(signed_in.workspace_id),
        "c": secrets.token_urlsafe(32),
    }
    response.set_cookie(
        COOKIE,
        _serializer().dumps(payload),
        max_age=SESSION_SECONDS,
        path=PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def end(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE,
        path=PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def read(request: Request) -> Session | None:
    """The request's session, if its cookie is ours, recent, and its key still live."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    try:
        payload = _serializer().loads(cookie, max_age=SESSION_SECONDS)
        signed_in = service.SignedIn(UUID(payload["k"]), UUID(payload["w"]))
        csrf = str(payload["c"])
    except (BadSignature, KeyError, TypeError, ValueError):
        return None
    name = service.workspace_name(signed_in)
    if name is None:
        return None
    return Session(signed_in.key_id, signed_in.workspace_id, name, csrf)


def current(request: Request) -> Session:
    found = read(request)
    if found is None:
        raise SignInRequired
    return found


def same_origin(request: Request) -> bool:
    """What the browser says of where the request comes from: this very origin (or, from a
    browser that says nothing, no sign of another)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:  # not a URL (an unclosed IPv6 bracket): not this origin
        return False
    if parts.scheme not in _DEFAULT_PORTS:
        return False
    here = request.headers.get("host", "").lower()
    return _without_default_port(parts.netloc.lower(), parts.scheme) == _without_default_port(
        here, parts.scheme
    )


_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def _without_default_port(netloc: str, scheme: str) -> str:
    """`host:443` and `host` are one origin over https (and `:80` over http)."""
    return netloc.removesuffix(_DEFAULT_PORTS[scheme])


def check_origin(request: Request) -> None:
    if not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "refused: a request from another site")


async def acting(request: Request) -> Session:
    """The session of a form that changes something: signed in, from this origin, with the
    session's CSRF token."""
    check_origin(request)
    found = current(request)
    form = await request.form()
    token = form.get("csrf")
    if not isinstance(token, str) or not hmac.compare_digest(token.encode(), found.csrf.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "refused: the form is stale or forged")
    return found


SessionDep = Annotated[Session, Depends(current)]
ActingDep = Annotated[Session, Depends(acting)]
