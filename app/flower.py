"""What Flower shows of Runway, and where it listens.

Flower (`celery -A app flower`) listens on every interface unless told otherwise; Runway's
Flower listens on 127.0.0.1 unless `--address` or `FLOWER_ADDRESS` say otherwise.

Flower shows each worker's configuration, which it asks for with the `conf` remote-control
command. Celery's own `conf` masks settings by name (`broker_url`, `*password*`, ...), which
misses a URL under any other name, `redbeat_redis_url` for one. The workers answer this `conf`
instead: Celery's table with the password of every URL in it masked, wherever it is.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from celery.utils.serialization import jsonify, strtobool
from celery.worker.control import inspect_command

from app import logs

LOOPBACK = "127.0.0.1"


def listen_on_loopback() -> None:
    """Make loopback Flower's default address. Flower is a plug-in of the `celery` command,
    so its options exist before the app is loaded, and take their values (command line,
    FLOWER_* variables, config file) only after: those still win."""
    module = sys.modules.get("flower.options")
    if module is not None and not module.options.address:
        module.options.address = LOOPBACK


def masked(value: Any) -> Any:
    """`value` with the password of every URL in it masked, in nested settings too."""
    if isinstance(value, str):
        return logs.mask(value)
    if isinstance(value, Mapping):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item) for item in value]
    return value


@inspect_command(
    alias="dump_conf",
    signature="[include_defaults=False]",
    args=[("with_defaults", strtobool)],
)
def conf(state: Any, with_defaults: bool = False, **_: Any) -> Any:
    """List configuration (every password masked)."""
    table = state.app.conf.table(with_defaults=with_defaults, censored=True)
    return jsonify(
        masked(table),
        keyfilter=lambda key: isinstance(key, str) and not key.startswith("__"),
        unknown_type_filter=lambda value: masked(repr(value)),
    )
