"""Webhook endpoints: a user's endpoints, their delivery log, redelivery and a test event.

Nothing here sends HTTP: redelivery and the test event only make a delivery due, and the
delivery job (services.webhooks.attempt) sends it within seconds.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from dependencies import DeliveryID, SessionDep, SettingsDep, WebhookID, WebhookManager
from openapi_docs import error_responses, with_headers
from routers.paging import pagination_headers
from services import webhooks as webhook_service
from sharing_models import Paging
from webhook_models import DeliveryRead, WebhookCreate, WebhookCreated, WebhookRead, WebhookUpdate

router = APIRouter(
    prefix="/webhooks", tags=["webhooks"], responses=error_responses(401, 403, 429, 503)
)
_BODY = error_responses(400, 413, 422)
_FOUND = error_responses(404, 422)


@router.post("", status_code=201, response_model=WebhookCreated, responses=_BODY)
async def create_webhook(
    data: WebhookCreate, session: SessionDep, user_id: WebhookManager, settings: SettingsDep
) -> WebhookCreated:
    """Add an endpoint for the caller's events; the answer carries its signing secret, once.
    A URL that is not https:// or whose host resolves to a non-public address is a 422."""
    return await webhook_service.create_webhook(
        session, user_id=user_id, data=data, settings=settings
    )


@router.get("", response_model=list[WebhookRead])
async def list_webhooks(session: SessionDep, user_id: WebhookManager) -> list[WebhookRead]:
    """The caller's endpoints, oldest first (secrets are never shown again)."""
    return await webhook_service.list_webhooks(session, user_id=user_id)


@router.get("/{webhook_id}", response_model=WebhookRead, responses=_FOUND)
async def get_webhook(
    webhook_id: WebhookID, session: SessionDep, user_id: WebhookManager
) -> WebhookRead:
    """One of the caller's endpoints (another user's is a 404, like a missing one)."""
    return await webhook_service.get_webhook(session, user_id=user_id, webhook_id=webhook_id)


@router.patch("/{webhook_id}", response_model=WebhookRead, responses={**_FOUND, **_BODY})
async def update_webhook(
    webhook_id: WebhookID,
    data: WebhookUpdate,
    session: SessionDep,
    user_id: WebhookManager,
    settings: SettingsDep,
) -> WebhookRead:
    """Change an endpoint's URL (checked as at creation), events, description or `enabled`."""
    return await webhook_service.update_webhook(
        session, user_id=user_id, webhook_id=webhook_id, data=data, settings=settings
    )


@router.delete("/{webhook_id}", status_code=204, response_class=Response, responses=_FOUND)
async def delete_webhook(
    webhook_id: WebhookID, session: SessionDep, user_id: WebhookManager
) -> None:
    """Remove an endpoint and its delivery log."""
    await webhook_service.delete_webhook(session, user_id=user_id, webhook_id=webhook_id)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=list[DeliveryRead],
    responses={**with_headers(200, "X-Total-Count", "Link"), **_FOUND},
)
async def list_deliveries(
    request: Request,
    webhook_id: WebhookID,
    paging: Annotated[Paging, Query()],
    session: SessionDep,
    user_id: WebhookManager,
    response: Response,
) -> list[DeliveryRead]:
    """An endpoint's deliveries, newest first, paged."""
    deliveries, total = await webhook_service.list_deliveries(
        session, user_id=user_id, webhook_id=webhook_id, skip=paging.skip, limit=paging.limit
    )
    response.headers.update(
        pagination_headers(request, total=total, skip=paging.skip, limit=paging.limit)
    )
    return deliveries


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryRead,
    responses=_FOUND,
)
async def redeliver(
    webhook_id: WebhookID, delivery_id: DeliveryID, session: SessionDep, user_id: WebhookManager
) -> DeliveryRead:
    """Send a delivery again (same payload, same `webhook-id`): it is made due now."""
    return await webhook_service.redeliver(
        session, user_id=user_id, webhook_id=webhook_id, delivery_id=delivery_id
    )


@router.post("/{webhook_id}/test", status_code=202, response_model=DeliveryRead, responses=_FOUND)
async def send_test(
    webhook_id: WebhookID, session: SessionDep, user_id: WebhookManager
) -> DeliveryRead:
    """Send a `webhook.test` event to the endpoint: a new delivery, due now."""
    return await webhook_service.send_test(session, user_id=user_id, webhook_id=webhook_id)
