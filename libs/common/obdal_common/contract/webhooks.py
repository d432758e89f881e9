"""The webhooks service's contract: an app's endpoints, their secrets and their delivery logs.

Served by ``obdal_webhooks.bindings``; called by the gateway (``/v1/webhooks``) through
``Webhooks(bus)``. The webhooks service owns endpoints (NATS KV ``obdal_webhooks``) and
deliveries (MongoDB ``webhook_deliveries``); events reach it on the ``OBDAL_HOOKS`` stream
(:mod:`obdal_common.hooks`), never through an RPC. Every RPC may also answer 503
``webhooks_unavailable`` / ``webhooks_timeout``, 503 ``mongo_unavailable`` and 400 ``bad_message``.
"""

from __future__ import annotations

from obdal_common import subjects
from obdal_common.contract.rpc import Contract, Rpc
from obdal_common.errors import BadRequest, Conflict, NotFound, UnprocessableContent
from obdal_common.schemas import (
    DeliveriesErase,
    DeliveriesErased,
    DeliveryLookup,
    DeliveryPage,
    DeliveryQuery,
    ServiceStatus,
    StatusQuery,
    WebhookCreate,
    WebhookDeleted,
    WebhookDelivery,
    WebhookInfo,
    WebhookList,
    WebhookListQuery,
    WebhookLookup,
    WebhookRotate,
    WebhooksAppDeleted,
    WebhooksDeleteApp,
    WebhookUpdate,
)

__all__ = ["Webhooks"]

# Creating or changing an endpoint resolves its host (bounded by the outbound connect timeout).
_CHECKED_S = 10.0
_QUICK_S = 5.0
_APP_S = 30.0


class Webhooks(Contract):
    service = "webhooks"

    status = Rpc(subjects.status_subject("webhooks"), StatusQuery, ServiceStatus, timeout=1.5)
    """Health of the webhooks service and MongoDB (``GET /v1/status``)."""

    # 422 ``invalid_webhook`` (a field named) or an outbound refusal's code (``private_address``,
    # ``scheme_not_allowed`` ...); 409 ``too_many_webhooks``.
    create = Rpc(
        "obdal.webhooks.create",
        WebhookCreate,
        WebhookInfo,
        timeout=_CHECKED_S,
        errors=(UnprocessableContent, Conflict),
    )
    """A new endpoint with its first secret, shown once (``POST /v1/webhooks``)."""

    list = Rpc("obdal.webhooks.list", WebhookListQuery, WebhookList, timeout=_QUICK_S)
    """The app's endpoints (``GET /v1/webhooks``)."""

    get = Rpc("obdal.webhooks.get", WebhookLookup, WebhookInfo, timeout=_QUICK_S, errors=(NotFound,))
    """One endpoint (``GET /v1/webhooks/{id}``); 404 ``webhook_not_found``."""

    update = Rpc(
        "obdal.webhooks.update",
        WebhookUpdate,
        WebhookInfo,
        timeout=_CHECKED_S,
        errors=(NotFound, UnprocessableContent),
    )
    """Change an endpoint's URL, events, description or state (``PATCH /v1/webhooks/{id}``)."""

    rotate = Rpc("obdal.webhooks.rotate", WebhookRotate, WebhookInfo, timeout=_QUICK_S, errors=(NotFound,))
    """A new secret, shown once; the old ones keep signing for the overlap (``POST .../rotate``)."""

    delete = Rpc("obdal.webhooks.delete", WebhookLookup, WebhookDeleted, timeout=_APP_S, errors=(NotFound,))
    """An endpoint and its delivery log (``DELETE /v1/webhooks/{id}``)."""

    deliveries = Rpc(
        "obdal.webhooks.deliveries",
        DeliveryQuery,
        DeliveryPage,
        timeout=_QUICK_S,
        errors=(NotFound, BadRequest),
    )
    """An endpoint's delivery log, newest first (``GET /v1/webhooks/{id}/deliveries``)."""

    replay = Rpc(
        "obdal.webhooks.replay", DeliveryLookup, WebhookDelivery, timeout=_QUICK_S, errors=(NotFound,)
    )
    """Send a delivery again, same ``webhook-id``, with a fresh retry schedule
    (``POST /v1/webhooks/{id}/deliveries/{delivery_id}/replay``); 404 ``delivery_not_found``."""

    delete_app = Rpc("obdal.webhooks.apps.delete", WebhooksDeleteApp, WebhooksAppDeleted, timeout=_APP_S)
    """Every endpoint and delivery of a deleted app (``DELETE /v1/admin/apps/{id}``)."""

    erase_sessions = Rpc("obdal.webhooks.sessions.erase", DeliveriesErase, DeliveriesErased, timeout=_APP_S)
    """Every delivery carrying these sessions' content, sent or not (``DELETE /v1/sessions/{id}``,
    ``/v1/users/{user}``), after metering and the chat erased theirs."""
