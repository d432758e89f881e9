"""The webhooks service's side of its contract: one handler per RPC of
:class:`~obdal_common.contract.Webhooks`.

MongoDB being unreachable is mapped here, once, to 503 ``mongo_unavailable``.
"""

from __future__ import annotations

from pymongo.errors import PyMongoError

from obdal_common.contract import Bindings, Webhooks
from obdal_common.errors import DependencyUnavailable, NotFound
from obdal_common.health import Check, status_handler
from obdal_common.schemas import (
    DeliveriesErase,
    DeliveriesErased,
    DeliveryLookup,
    DeliveryPage,
    DeliveryQuery,
    WebhookDeleted,
    WebhookDelivery,
    WebhookInfo,
    WebhookLookup,
    WebhooksAppDeleted,
    WebhooksDeleteApp,
    WebhookUpdate,
)
from obdal_webhooks.deliveries import DeliveryStore
from obdal_webhooks.endpoints import EndpointStore
from obdal_webhooks.handoff_mail import MailStore

__all__ = ["webhooks_bindings"]


def _mongo_unavailable() -> DependencyUnavailable:
    return DependencyUnavailable(
        "the webhook delivery log (MongoDB) is unavailable, retry shortly", code="mongo_unavailable"
    )


def webhooks_bindings(
    *, endpoints: EndpointStore, deliveries: DeliveryStore, mails: MailStore, checks: dict[str, Check]
) -> Bindings:
    """Every webhooks RPC bound to what answers it."""

    async def update(request: WebhookUpdate) -> WebhookInfo:
        before = await endpoints.find(request.app_id, request.endpoint_id)
        info = await endpoints.update(request)
        if info.endpoint.enabled and not before.enabled:
            await deliveries.unpark(request.endpoint_id)
        elif before.enabled and not info.endpoint.enabled:
            await deliveries.park(request.endpoint_id)
        return info

    async def delete(lookup: WebhookLookup) -> WebhookDeleted:
        await endpoints.delete(lookup.app_id, lookup.endpoint_id)
        removed = await deliveries.delete_endpoint(lookup.endpoint_id)
        return WebhookDeleted(endpoint_id=lookup.endpoint_id, deliveries_deleted=removed)

    async def page(query: DeliveryQuery) -> DeliveryPage:
        await endpoints.find(query.app_id, query.endpoint_id)
        return await deliveries.page(query)

    async def replay(lookup: DeliveryLookup) -> WebhookDelivery:
        endpoint = await endpoints.find(lookup.app_id, lookup.endpoint_id)
        if not endpoint.enabled:
            raise NotFound(
                f"webhook endpoint {lookup.endpoint_id} is disabled: enable it to replay",
                code="webhook_disabled",
            )
        return await deliveries.replay(lookup)

    async def delete_app(request: WebhooksDeleteApp) -> WebhooksAppDeleted:
        removed = await endpoints.delete_app(request.app_id)
        await deliveries.delete_app(request.app_id)
        await mails.delete_app(request.app_id)
        return WebhooksAppDeleted(endpoints_deleted=removed)

    async def erase_sessions(request: DeliveriesErase) -> DeliveriesErased:
        erased = await deliveries.erase_sessions(request.app_id, request.session_ids)
        # A handoff's e-mail waiting to be sent holds the conversation and the contact too.
        await mails.erase_sessions(request.app_id, request.session_ids)
        return DeliveriesErased(deliveries_erased=erased)

    return (
        Bindings(Webhooks, lower_errors={PyMongoError: _mongo_unavailable})
        .bind(Webhooks.status, status_handler("webhooks", checks))
        .bind(Webhooks.create, endpoints.create)
        .bind(Webhooks.list, endpoints.list)
        .bind(Webhooks.get, endpoints.get)
        .bind(Webhooks.update, update)
        .bind(Webhooks.rotate, endpoints.rotate)
        .bind(Webhooks.delete, delete)
        .bind(Webhooks.deliveries, page)
        .bind(Webhooks.replay, replay)
        .bind(Webhooks.delete_app, delete_app)
        .bind(Webhooks.erase_sessions, erase_sessions)
    )
