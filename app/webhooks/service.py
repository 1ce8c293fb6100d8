"""Webhooks: add, list, remove, their deliveries, and a ping. One transaction per call.

A webhook's URL is checked when it is added (http or https; no private, loopback or
link-local address unless RUNWAY_WEBHOOK_ALLOW_PRIVATE) and again at every delivery, after
DNS resolution (app/webhooks/sending.py). Its secret is made here and returned once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy.engine import Row

from app import db
from app.errors import Conflict, InvalidInput, NotFound
from app.models import WEBHOOK_EVENTS
from app.settings import get_settings
from app.webhooks import destinations, outbox, signing, store

MAX_WEBHOOKS = 25
MAX_DESCRIPTION = 500


@dataclass(frozen=True)
class Created:
    webhook: Row[Any]
    secret: str  # shown once, in the answer to the request that created it


def create(
    workspace_id: UUID, url: str, events: Sequence[str], description: str | None = None
) -> Created:
    _check_events(events)
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise InvalidInput("description", f"at most {MAX_DESCRIPTION} characters")
    destinations.check_destination(url, allow_private=get_settings().webhook_allow_private)
    secret = signing.new_secret()
    with db.unit_of_work() as conn:
        store.lock_workspace(conn, workspace_id)
        if store.count(conn, workspace_id) >= MAX_WEBHOOKS:
            raise Conflict(f"a workspace has at most {MAX_WEBHOOKS} webhooks")
        webhook = store.create(conn, workspace_id, url, sorted(set(events)), description, secret)
    return Created(webhook, secret)


def _check_events(events: Sequence[str]) -> None:
    if not events:
        raise InvalidInput("events", "name at least one event")
    for index, event in enumerate(events):
        if event not in WEBHOOK_EVENTS:
            raise InvalidInput(f"events.{index}", f"unknown event {event!r}")


def list_all(workspace_id: UUID) -> Sequence[Row[Any]]:
    with db.unit_of_work() as conn:
        return store.list_all(conn, workspace_id)


def delete(workspace_id: UUID, webhook_id: UUID) -> None:
    with db.unit_of_work() as conn:
        if not store.delete(conn, workspace_id, webhook_id):
            raise NotFound("webhook", webhook_id)


def deliveries(workspace_id: UUID, webhook_id: UUID, limit: int) -> Sequence[Row[Any]]:
    with db.unit_of_work() as conn:
        if store.get(conn, workspace_id, webhook_id) is None:
            raise NotFound("webhook", webhook_id)
        return store.recent_deliveries(conn, webhook_id, limit)


def ping(workspace_id: UUID, webhook_id: UUID) -> UUID:
    """Queue a `ping` event for the webhook; beat sends it within a moment."""
    event_id = uuid4()
    with db.unit_of_work() as conn:
        webhook = store.get(conn, workspace_id, webhook_id)
        if webhook is None:
            raise NotFound("webhook", webhook_id)
        payload = {"webhook": {"id": str(webhook.id), "events": list(webhook.events)}}
        outbox.ping(conn, webhook_id, event_id, payload)
    return event_id
