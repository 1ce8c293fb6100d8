"""/webhooks: the workspace's endpoints, their deliveries, and a test ping."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from api.deps import WorkspaceDep
from api.responses import AUTHORIZED, BODY, CONFLICT, INVALID, NOT_FOUND, answers
from api.webhooks import (
    DeliveryList,
    DeliveryOut,
    PingOut,
    WebhookCreated,
    WebhookIn,
    WebhookList,
    WebhookOut,
)
from app.webhooks import service

router = APIRouter(prefix="/webhooks", tags=["webhooks"], responses=AUTHORIZED)


@router.post("", status_code=status.HTTP_201_CREATED, responses=answers(BODY, CONFLICT))
def create_webhook(body: WebhookIn, workspace: WorkspaceDep) -> WebhookCreated:
    """Add an endpoint. The answer holds its signing secret, shown this once."""
    created = service.create(workspace, body.url, body.events, body.description)
    return WebhookCreated(**WebhookOut.of(created.webhook).model_dump(), secret=created.secret)


@router.get("")
def list_webhooks(workspace: WorkspaceDep) -> WebhookList:
    """The workspace's endpoints, oldest first (never their secrets)."""
    return WebhookList(items=[WebhookOut.of(row) for row in service.list_all(workspace)])


@router.delete(
    "/{webhook_id:uuid}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=answers(NOT_FOUND, INVALID),
)
def delete_webhook(webhook_id: UUID, workspace: WorkspaceDep) -> Response:
    """Remove an endpoint; its pending deliveries are dropped."""
    service.delete(workspace, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id:uuid}/deliveries", responses=answers(NOT_FOUND, INVALID))
def list_deliveries(
    webhook_id: UUID,
    workspace: WorkspaceDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeliveryList:
    """The endpoint's deliveries, newest event first."""
    found = service.deliveries(workspace, webhook_id, limit)
    return DeliveryList(items=[DeliveryOut.of(row) for row in found])


@router.post(
    "/{webhook_id:uuid}/test",
    status_code=status.HTTP_202_ACCEPTED,
    responses=answers(NOT_FOUND, INVALID),
)
def ping_webhook(webhook_id: UUID, workspace: WorkspaceDep) -> PingOut:
    """Send a `ping` event to the endpoint now (beat delivers it within a moment)."""
    return PingOut(event_id=service.ping(workspace, webhook_id))
