"""Research streams: create, change, delete, read. One transaction per call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy.engine import Connection, Row

from app import db
from app.errors import Conflict, InvalidInput, NotFound
from app.limits.service import check_key
from app.models import MAX_LIMIT_KEYS, PRIORITIES
from app.pipelines import registry
from app.schedules import config as schedules
from app.streams import store

UPCOMING = 5
# The schedule_config keys that decide when a stream fires; a PATCH of others keeps its slot.
TIMING = ("cron", "interval_seconds", "timezone", "enabled")


@dataclass(frozen=True)
class Stream:
    row: Row[Any]
    upcoming: list[datetime]


def create(workspace_id: UUID, fields: Mapping[str, Any]) -> Stream:
    """A new stream; `priority` (default normal) and `limit_keys` (default none) included."""
    registry.require(fields["pipeline"])
    check_flow(fields)
    values = {"workspace_id": workspace_id, **fields, **_schedule(fields.get("schedule_config"))}
    with db.unit_of_work() as conn:
        return _with_upcoming(store.insert(conn, values))


def update(workspace_id: UUID, stream_id: UUID, changes: Mapping[str, Any]) -> Stream:
    """Apply a PATCH. A schedule_config object is merged into the current one, then validated;
    a change of its timing takes effect at once (see `_reschedule`)."""
    if "pipeline" in changes:
        registry.require(changes["pipeline"])
    check_flow(changes)
    with db.unit_of_work() as conn:
        current = _get(conn, workspace_id, stream_id, for_update=True)
        values = dict(changes)
        if "schedule_config" in changes:
            values.update(_reschedule(current, changes["schedule_config"]))
        return _with_upcoming(store.update(conn, stream_id, values))


def get(workspace_id: UUID, stream_id: UUID) -> Stream:
    with db.unit_of_work() as conn:
        return _with_upcoming(_get(conn, workspace_id, stream_id))


def list_all(workspace_id: UUID, limit: int, offset: int) -> list[Stream]:
    with db.unit_of_work() as conn:
        return [_with_upcoming(row) for row in store.list_for(conn, workspace_id, limit, offset)]


def delete(workspace_id: UUID, stream_id: UUID) -> None:
    with db.unit_of_work() as conn:
        if not store.delete(conn, stream_id, workspace_id):
            raise NotFound("stream", stream_id)


def ticks(workspace_id: UUID, stream_id: UUID, limit: int) -> Sequence[Row[Any]]:
    with db.unit_of_work() as conn:
        _get(conn, workspace_id, stream_id)
        return store.recent_ticks(conn, stream_id, limit)


def workspace_of(stream_id: UUID) -> UUID:
    """The workspace a stream belongs to, so operators can act on it as its workspace would."""
    with db.unit_of_work() as conn:
        workspace_id = store.workspace_of(conn, stream_id)
    if workspace_id is None:
        raise NotFound("stream", stream_id)
    return workspace_id


def set_enabled(stream_id: UUID, enabled: bool) -> Stream:
    """Pause or resume any workspace's stream: the same change as a PATCH of
    `schedule_config.enabled`, so `next_scheduled_run` and `paused_reason` move alike."""
    workspace_id = workspace_of(stream_id)
    with db.unit_of_work() as conn:
        if _get(conn, workspace_id, stream_id).schedule_config is None:
            raise Conflict(f"stream {stream_id} has no schedule to pause or resume")
    return update(workspace_id, stream_id, {"schedule_config": {"enabled": enabled}})


def check_flow(fields: Mapping[str, Any]) -> None:
    """A stream's `priority` and `limit_keys`, where given: a known priority, and at most
    MAX_LIMIT_KEYS well-formed keys, each once."""
    if "priority" in fields and fields["priority"] not in PRIORITIES:
        raise InvalidInput("priority", f"must be one of {', '.join(PRIORITIES)}")
    keys = fields.get("limit_keys")
    if keys is None:
        return
    if len(keys) > MAX_LIMIT_KEYS:
        raise InvalidInput("limit_keys", f"at most {MAX_LIMIT_KEYS} limit keys")
    if len(set(keys)) != len(keys):
        raise InvalidInput("limit_keys", "names a limit key more than once")
    for key in keys:
        check_key(key, field="limit_keys", location="body")


def _get(
    conn: Connection, workspace_id: UUID, stream_id: UUID, for_update: bool = False
) -> Row[Any]:
    row = store.get(conn, stream_id, workspace_id, for_update=for_update)
    if row is None:
        raise NotFound("stream", stream_id)
    return row


def _schedule(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validated config and the first fire time it implies (none while disabled)."""
    if raw is None:
        return {"schedule_config": None, "next_scheduled_run": None}
    config = schedules.parse(dict(raw))
    first = config.next_after(schedules.now()) if config.enabled else None
    return {"schedule_config": config.model_dump(), "next_scheduled_run": first}


def _reschedule(current: Row[Any], patch: Mapping[str, Any] | None) -> dict[str, Any]:
    """The schedule columns after a PATCH of schedule_config, merged into the current one.

    `next_scheduled_run` moves only when `cron`, `interval_seconds`, `timezone` or `enabled`
    changes (see `_next_run` for where to); a stream enabled by the PATCH loses its
    `paused_reason`. A schedule added where there was none starts afresh; null removes it.
    """
    if patch is None:
        return {**_schedule(None), "paused_reason": None}
    if current.schedule_config is None:
        if patch.get("cron") is None and patch.get("interval_seconds") is None:
            raise Conflict("the stream has no schedule: give cron or interval_seconds to add one")
        values = _schedule(patch)
    else:
        before = schedules.ScheduleConfig.model_construct(**current.schedule_config)
        merged = {**current.schedule_config, **patch}
        if merged.get("cron") is None and merged.get("interval_seconds") is None:
            raise Conflict("that would leave the schedule without cron or interval_seconds")
        config = schedules.parse(merged)
        values = {"schedule_config": config.model_dump()}
        if any(getattr(before, key) != getattr(config, key) for key in TIMING):
            values["next_scheduled_run"] = _next_run(current, config)
    if values["schedule_config"]["enabled"]:
        values["paused_reason"] = None
    return values


def _next_run(current: Row[Any], config: schedules.ScheduleConfig) -> datetime | None:
    """Where a changed schedule fires next: nowhere while disabled. A slot already due, not
    yet claimed by beat, stays due: the ticker fires it or records it, as after downtime,
    rather than it vanishing without a tick. Otherwise the first slot after now, and an
    interval keeps its grid: it counts from the last scheduled run (every 15 minutes, set 10
    minutes after a run, fires 5 minutes later; a resumed stream fires on the slots it had),
    or, for a stream that never ran, from its upcoming slot."""
    if not config.enabled:
        return None
    now = schedules.now()
    upcoming: datetime | None = current.next_scheduled_run
    if upcoming is not None and upcoming <= now:
        return upcoming
    return config.next_after(now, anchor=current.last_scheduled_run or upcoming)


def _with_upcoming(row: Row[Any]) -> Stream:
    first = row.next_scheduled_run
    if first is None or row.schedule_config is None:
        return Stream(row, [])
    config = schedules.ScheduleConfig.model_validate(row.schedule_config)
    return Stream(row, [first, *config.upcoming(first, UPCOMING - 1, anchor=first)])
