"""Logging for every Runway process: JSON lines (default) or human-readable console output.

One handler on the root logger, writing to the process's real stderr, and everything goes
through it: Runway's own lines, Celery's, uvicorn's (its loggers are taken over from the
configuration uvicorn installs before it imports the app) and Python's warnings. Whatever the
format, a password in a URL is masked in every line, and a lifecycle line carries the run's
identity as fields of its own (`lifecycle`).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

CONSOLE_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(processName)s %(message)s"
MASK = "********"
# scheme://user:password@ -> scheme://user:********@
# The password of a URL runs to its last "@" (a raw "@" or "/" in it is masked too), and
# a `password=` parameter to the next "&".
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s\"']*):[^\s\"']*@")
_PARAMETER_PASSWORD = re.compile(r"(?i)(?P<head>\b(?:password|passwd|pwd)=)[^&\s\"']*")
# Loggers that bring handlers of their own: their lines go through the root handler instead.
_TAKEN_OVER = ("uvicorn", "uvicorn.error", "uvicorn.access")
# uvicorn adds an ANSI-coloured copy of some messages; it is not worth a field.
_NOT_FIELDS = [*RESERVED_ATTRS, "color_message"]


def mask(text: str) -> str:
    """`text` with the password of every URL in it replaced by a mask."""
    text = _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", text)
    return _PARAMETER_PASSWORD.sub(rf"\g<head>{MASK}", text)


class _MaskedJson(JsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


class _MaskedConsole(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


def configure(fmt: str, level: int | str = "INFO") -> None:
    # The real stderr: Celery may swap sys.stderr for a proxy that logs what it is given.
    handler = logging.StreamHandler(sys.__stderr__)
    if fmt == "json":
        handler.setFormatter(
            _MaskedJson(
                JSON_FIELDS, rename_fields={"levelname": "level"}, reserved_attrs=_NOT_FIELDS
            )
        )
    else:
        handler.setFormatter(_MaskedConsole(CONSOLE_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in _TAKEN_OVER:
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.captureWarnings(True)
    # httpx logs every request's full URL at INFO; a webhook URL may carry a token.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_from_settings() -> None:
    """For a process that is not Celery's (the API under uvicorn): call before serving."""
    from app.settings import get_settings

    settings = get_settings()
    configure(settings.log_format, settings.log_level)


def lifecycle(
    run_id: UUID,
    stream_id: UUID | None,
    run_type: str,
    attempt: int | None,
    status: str | None,
    duration: float | None = None,
) -> Mapping[str, Any]:
    """The fields of a run's lifecycle line (`log.info(..., extra=lifecycle(...))`): the
    run's status after the event, and how long the attempt took (seconds), when known."""
    return {
        "execution_id": str(run_id),
        "stream_id": None if stream_id is None else str(stream_id),
        "run_type": str(run_type),
        "attempt": attempt,
        "status": None if status is None else str(status),
        "duration": None if duration is None else round(duration, 3),
    }
