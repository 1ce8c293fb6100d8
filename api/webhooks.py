"""Request and response bodies of /webhooks. The bounds are app/webhooks' own, so the schema
states what the service enforces."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.engine import Row

from app.webhooks.destinations import MAX_URL_LENGTH, URL_PATTERN
from app.webhooks.service import MAX_DESCRIPTION

EventType = Literal[
    "run.completed",
    "run.failed",
    "run.cancelled",
    "run.late",
    "stream.paused",
    "stream.recovered",
    "schedule.missed",
]


def _unique(events: list[str]) -> list[str]:
    if len(set(events)) != len(events):
        raise ValueError("names an event more than once")
    return events


class WebhookIn(BaseModel):
    # Python's re: the URL pattern looks ahead (pydantic's default engine cannot).
    model_config = ConfigDict(extra="forbid", regex_engine="python-re")

    url: Annotated[
        str,
        StringConstraints(min_length=1, max_length=MAX_URL_LENGTH, pattern=URL_PATTERN),
    ] = Field(
        description="Where events are POSTed: an `http` or `https` URL with a host name or "
        "IPv4 address, in printable ASCII, without credentials or fragment. Unless the server "
        "allows it (RUNWAY_WEBHOOK_ALLOW_PRIVATE), a host that is or resolves to a private, "
        "loopback or link-local address is refused (422)."
    )
    events: Annotated[
        list[EventType],
        Field(min_length=1, max_length=7, json_schema_extra={"uniqueItems": True}),
        AfterValidator(_unique),
    ] = Field(description="The events to send, each once.")
    description: (
        Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION, pattern=r"^[^\x00]*$")] | None
    ) = Field(None, description="For people: what the endpoint is.")


class WebhookOut(BaseModel):
    id: UUID
    url: str
    events: list[str]
    description: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: Row[Any]) -> WebhookOut:
        return cls.model_validate(dict(row._mapping))


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="Signs every delivery (`Runway-Signature`). Shown only in this answer."
    )


class WebhookList(BaseModel):
    items: list[WebhookOut]


class DeliveryOut(BaseModel):
    event_id: UUID
    type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime = Field(description="When the event happened.")

    @classmethod
    def of(cls, row: Row[Any]) -> DeliveryOut:
        return cls.model_validate(dict(row._mapping))


class DeliveryList(BaseModel):
    items: list[DeliveryOut]


class PingOut(BaseModel):
    event_id: UUID
