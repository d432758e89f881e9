"""The Webhooks pages: the app's signed webhook endpoints and each one's delivery log.

``/webhooks`` lists the endpoints (``GET /v1/webhooks``) with their events, whether each is
enabled (and why not), since when it fails and when it last succeeded, and, for editors, the form
that adds one; ``/webhooks/{id}`` shows an endpoint (``GET /v1/webhooks/{id}``) and a page of its
deliveries (``GET /v1/webhooks/{id}/deliveries``, newest first, the API's cursor and state
filter), each with its attempts. The browser adds, enables, disables, rotates, deletes and replays
through ``/v1/webhooks`` itself (``static/webhooks.js`` shows a signing secret once, from the
API's answer; the server never renders one). Webhooks carry conversations, so the API gives them
a scope of their own that viewers lack: for a viewer these pages say so, with the API's refusal.
"""

from __future__ import annotations

from typing import Any, Final, get_args
from urllib.parse import quote

from litestar import Request, get
from litestar.response import Template

from obdal_common.errors import Forbidden
from obdal_common.schemas import DeliveryState, HookEventType
from obdal_gateway.console.api_client import console_api
from obdal_gateway.console.render import PageContext, page, page_context

__all__ = ["EVENTS", "WEBHOOK_PAGES", "attempt_words"]

_DELIVERIES_PER_PAGE: Final = 25
# Every event an endpoint may ask for, with what it means (docs/webhooks.md#events).
_MEANINGS: Final[dict[str, str]] = {
    "conversation.started": "a conversation starts",
    "message.answered": "the assistant answers a question",
    "message.declined": "the assistant declines a question",
    "feedback.created": "a customer rates an answer",
    "handoff.requested": "a customer asks for a person",
    "handoff.resolved": "a person marks a handed-off conversation resolved",
    "message.received": "a customer writes while waiting for a person",
    "file.ready": "a document or website page is ready",
    "file.failed": "a document or website page could not be read",
    "key.revoked": "a key is revoked",
    "budget.reached": "a key reaches its daily token budget",
    "endpoint.disabled": "another endpoint of this app is disabled",
}
EVENTS: Final = [(event, _MEANINGS.get(event, "")) for event in get_args(HookEventType)]
_STATES: Final = frozenset(get_args(DeliveryState))
# How long the current secret keeps signing beside a new one: the choices offered (default 24 h).
OVERLAP_CHOICES: Final = [(0, "no overlap"), (3600, "1 hour"), (86400, "24 hours"), (7 * 86400, "7 days")]


def attempt_words(attempt: dict[str, Any]) -> str:
    """An attempt's outcome as the log words it ("HTTP 204 in 35 ms"; ``static/webhooks.js`` too)."""
    answer = f"HTTP {attempt['status_code']}" if attempt["status_code"] is not None else "no answer"
    words = f"{answer} in {round(attempt['latency_ms']):,} ms"
    return f"{words}: {attempt['error']}" if attempt["error"] else words


def _shown(endpoint: dict[str, Any]) -> dict[str, Any]:
    rotating = [s["expires_at"] for s in endpoint["secrets"] if s.get("expires_at")]
    return {
        **endpoint,
        "path": quote(endpoint["endpoint_id"], safe=""),
        "old_secret_until": max(rotating) if rotating else None,
    }


def _refused(ctx: PageContext, error: Forbidden) -> Template:
    """What a viewer sees: that they may not manage webhooks, in the API's words too."""
    return page(
        "webhooks.html",
        ctx,
        active="webhooks",
        title="Webhooks",
        refused=str(error),
        webhooks=[],
        events=EVENTS,
        overlaps=OVERLAP_CHOICES,
    )


@get("/apps/{app_id:str}/webhooks", include_in_schema=False)
async def webhooks_page(request: Request[Any, Any, Any], app_id: str) -> Template:
    ctx = await page_context(request, app_id=app_id)
    try:
        listed = (await console_api(request).get(request, "/v1/webhooks", app_id=ctx.app_id))["webhooks"]
    except Forbidden as error:
        return _refused(ctx, error)
    # Newest first: what was just added is what one looks for.
    webhooks = [
        _shown(w) for w in sorted(listed, key=lambda w: (w["created_at"], w["endpoint_id"]), reverse=True)
    ]
    return page(
        "webhooks.html",
        ctx,
        active="webhooks",
        title="Webhooks",
        refused=None,
        webhooks=webhooks,
        events=EVENTS,
        overlaps=OVERLAP_CHOICES,
    )


@get("/apps/{app_id:str}/webhooks/{endpoint_id:str}", include_in_schema=False)
async def webhook_page(
    request: Request[Any, Any, Any],
    app_id: str,
    endpoint_id: str,
    cursor: str | None = None,
    status: str | None = None,
) -> Template:
    ctx = await page_context(request, app_id=app_id)
    api = console_api(request)
    path = f"/v1/webhooks/{quote(endpoint_id, safe='')}"
    state = status if status in _STATES else None
    query = {"limit": _DELIVERIES_PER_PAGE, "cursor": cursor, "status": state}
    try:
        endpoint = await api.get(request, path, app_id=ctx.app_id)
    except Forbidden as error:
        return _refused(ctx, error)
    listed = await api.get(request, f"{path}/deliveries", app_id=ctx.app_id, params=query)
    deliveries = [
        {**d, "tries": [{**a, "words": attempt_words(a)} for a in d["attempts"]]}
        for d in listed["deliveries"]
    ]
    return page(
        "webhook.html",
        ctx,
        active="webhooks",
        title="Webhook endpoint",
        endpoint=_shown(endpoint),
        webhook_path=path,
        deliveries=deliveries,
        next_cursor=listed["next_cursor"],
        paged=cursor is not None,
        status=state,
        states=sorted(_STATES),
        page_size=_DELIVERIES_PER_PAGE,
        events=EVENTS,
        overlaps=OVERLAP_CHOICES,
    )


WEBHOOK_PAGES = [webhooks_page, webhook_page]
