"""Logging for every Runway process: JSON lines (default) or human-readable console output."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

CONSOLE_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(processName)s %(message)s"


def configure(fmt: str, level: int | str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level"}))
    else:
        handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
