"""``/v1/webhooks``: the app's webhook endpoints, their secrets and delivery logs.

The webhooks service owns and delivers them (:class:`~obdal_common.contract.Webhooks`,
docs/webhooks.md); this route only shapes the HTTP side. Endpoints receive conversations, so
they take a scope of their own, ``webhooks`` (secret keys; console editors and owners).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import delete, get, patch, post
from litestar.openapi import ResponseSpec

from obdal_common.cursors import checked_cursor, checked_limit
from obdal_common.errors import BadRequest
from obdal_common.schemas import (
    DeliveryLookup,
    DeliveryQuery,
    DeliveryState,
    HookEventType,
    WebhookCreate,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookInfo,
    WebhookListQuery,
    WebhookLookup,
    WebhookRotate,
    WebhookUpdate,
)
from obdal_gateway.auth import Principal
from obdal_gateway.state import Gateway

__all__ = ["WEBHOOK_HANDLERS", "RotateBody", "WebhookBody", "WebhookChanges", "public_endpoint"]

_BODY_MAX_BYTES = 16 * 1024
_MAX_LIMIT = 100
_MAX_OVERLAP_S = 7 * 86400.0
_NOT_FOUND = ResponseSpec(
    data_container=dict[str, Any], description="`webhook_not_found`: no endpoint of the app has this id"
)
_REFUSED = ResponseSpec(
    data_container=dict[str, Any],
    description="`invalid_webhook` (a field, named), or why the URL may not be posted to: "
    "`scheme_not_allowed` (https only unless the operator allows http), `private_address`, "
    "`credentials_in_url`, `unresolvable`, …",
)


class WebhookBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An endpoint: ``url`` (https), ``events`` it hears of (none named: every event)."""

    url: str
    events: list[HookEventType] = msgspec.field(default_factory=list)
    description: str = ""
    enabled: bool = True


class WebhookChanges(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The fields to change; ``enabled: true`` turns a disabled endpoint back on (held deliveries go)."""

    url: str | None = None
    events: list[HookEventType] | None = None
    description: str | None = None
    enabled: bool | None = None


class RotateBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How long the current secret keeps signing beside the new one (receivers switch meanwhile)."""

    overlap_s: float = 86400.0


def public_endpoint(endpoint: WebhookEndpoint) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(endpoint)
    del body["app_id"]
    # Never the secrets, only when each was made and until when an old one still signs.
    body["secrets"] = [{k: v for k, v in s.items() if k != "secret"} for s in body["secrets"]]
    return body


def _shown(info: WebhookInfo) -> dict[str, Any]:
    body = public_endpoint(info.endpoint)
    if info.secret is not None:
        body["secret"] = info.secret  # shown once: on creation and rotation
    return body


def _delivery(delivery: WebhookDelivery) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(delivery)
    return body


@post(
    "/v1/webhooks",
    status_code=201,
    summary="Add a webhook endpoint; its signing secret is shown once",
    opt={"scope": "webhooks"},
    request_max_body_size=_BODY_MAX_BYTES,
    responses={
        409: ResponseSpec(data_container=dict[str, Any], description="`too_many_webhooks`"),
        422: _REFUSED,
    },
)
async def create_webhook(principal: Principal, gw: Gateway, data: WebhookBody) -> dict[str, Any]:
    """Events are signed with the returned ``secret`` (Standard Webhooks); keep it, it is not shown again."""
    info = await gw.webhooks.create(
        WebhookCreate(
            app_id=principal.app_id,
            url=data.url,
            events=data.events,
            description=data.description,
            enabled=data.enabled,
        )
    )
    await gw.audit.record(
        "webhook.created",
        app_id=principal.app_id,
        actor=principal.key_id,
        target=info.endpoint.endpoint_id,
        detail={"url": info.endpoint.url},
    )
    return _shown(info)


@get("/v1/webhooks", summary="The app's webhook endpoints", opt={"scope": "webhooks"})
async def list_webhooks(principal: Principal, gw: Gateway) -> dict[str, Any]:
    listed = await gw.webhooks.list(WebhookListQuery(app_id=principal.app_id))
    return {"webhooks": [public_endpoint(e) for e in listed.endpoints]}


@get(
    "/v1/webhooks/{endpoint_id:str}",
    summary="One webhook endpoint",
    opt={"scope": "webhooks"},
    responses={404: _NOT_FOUND},
)
async def get_webhook(principal: Principal, gw: Gateway, endpoint_id: str) -> dict[str, Any]:
    return _shown(await gw.webhooks.get(WebhookLookup(app_id=principal.app_id, endpoint_id=endpoint_id)))


@patch(
    "/v1/webhooks/{endpoint_id:str}",
    summary="Change a webhook endpoint, or enable or disable it",
    opt={"scope": "webhooks"},
    request_max_body_size=_BODY_MAX_BYTES,
    responses={404: _NOT_FOUND, 422: _REFUSED},
)
async def update_webhook(
    principal: Principal, gw: Gateway, endpoint_id: str, data: WebhookChanges
) -> dict[str, Any]:
    info = await gw.webhooks.update(
        WebhookUpdate(
            app_id=principal.app_id,
            endpoint_id=endpoint_id,
            url=data.url,
            events=data.events,
            description=data.description,
            enabled=data.enabled,
        )
    )
    await gw.audit.record(
        "webhook.updated",
        app_id=principal.app_id,
        actor=principal.key_id,
        target=endpoint_id,
        detail={"url": info.endpoint.url, "enabled": str(info.endpoint.enabled).lower()},
    )
    return _shown(info)


@post(
    "/v1/webhooks/{endpoint_id:str}/rotate",
    status_code=200,
    summary="A new signing secret, shown once; the old one signs too for the overlap",
    opt={"scope": "webhooks"},
    request_max_body_size=_BODY_MAX_BYTES,
    responses={404: _NOT_FOUND},
)
async def rotate_webhook_secret(
    principal: Principal, gw: Gateway, endpoint_id: str, data: RotateBody | None = None
) -> dict[str, Any]:
    overlap = RotateBody() if data is None else data
    if not 0 <= overlap.overlap_s <= _MAX_OVERLAP_S:
        raise BadRequest("overlap_s must be between 0 and 604800 (a week)", code="invalid_overlap")
    info = await gw.webhooks.rotate(
        WebhookRotate(app_id=principal.app_id, endpoint_id=endpoint_id, overlap_s=overlap.overlap_s)
    )
    await gw.audit.record(
        "webhook.secret_rotated", app_id=principal.app_id, actor=principal.key_id, target=endpoint_id
    )
    return _shown(info)


@delete(
    "/v1/webhooks/{endpoint_id:str}",
    status_code=200,
    summary="Delete a webhook endpoint and its delivery log",
    opt={"scope": "webhooks"},
    responses={404: _NOT_FOUND},
)
async def delete_webhook(principal: Principal, gw: Gateway, endpoint_id: str) -> dict[str, Any]:
    deleted = await gw.webhooks.delete(WebhookLookup(app_id=principal.app_id, endpoint_id=endpoint_id))
    await gw.audit.record(
        "webhook.deleted", app_id=principal.app_id, actor=principal.key_id, target=endpoint_id
    )
    return {"endpoint_id": endpoint_id, "deleted": True, "deliveries_deleted": deleted.deliveries_deleted}


@get(
    "/v1/webhooks/{endpoint_id:str}/deliveries",
    summary="An endpoint's deliveries, newest first, with every attempt (cursor pagination)",
    opt={"scope": "webhooks"},
    responses={404: _NOT_FOUND},
)
async def list_deliveries(
    principal: Principal,
    gw: Gateway,
    endpoint_id: str,
    limit: int = 50,
    cursor: str | None = None,
    status: DeliveryState | None = None,
) -> dict[str, Any]:
    """Each delivery: its ``webhook-id`` (``event_id``), state, attempts (status code, latency,
    error) and, while pending, when the next attempt is due; ``status`` keeps one state."""
    page = await gw.webhooks.deliveries(
        DeliveryQuery(
            app_id=principal.app_id,
            endpoint_id=endpoint_id,
            limit=checked_limit(limit, most=_MAX_LIMIT),
            cursor=checked_cursor(cursor),
            state=status,
        )
    )
    return {"deliveries": [_delivery(d) for d in page.deliveries], "next_cursor": page.next_cursor}


@post(
    "/v1/webhooks/{endpoint_id:str}/deliveries/{delivery_id:str}/replay",
    status_code=202,
    summary="Send a delivery again (same webhook-id, a fresh retry schedule)",
    opt={"scope": "webhooks"},
    responses={
        404: ResponseSpec(
            data_container=dict[str, Any],
            description="`webhook_not_found`, `delivery_not_found`, or `webhook_disabled` (enable it first)",
        )
    },
)
async def replay_delivery(
    principal: Principal, gw: Gateway, endpoint_id: str, delivery_id: str
) -> dict[str, Any]:
    delivery = await gw.webhooks.replay(
        DeliveryLookup(app_id=principal.app_id, endpoint_id=endpoint_id, delivery_id=delivery_id)
    )
    await gw.audit.record(
        "webhook.replayed", app_id=principal.app_id, actor=principal.key_id, target=delivery_id
    )
    return _delivery(delivery)


WEBHOOK_HANDLERS = [
    create_webhook,
    list_webhooks,
    get_webhook,
    update_webhook,
    rotate_webhook_secret,
    delete_webhook,
    list_deliveries,
    replay_delivery,
]
