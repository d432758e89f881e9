"""``/v1/admin`` app endpoints and the audit log."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import delete, get, patch, post, put

from obdal_common.cursors import checked_limit, decode_cursor, encode_cursor
from obdal_common.errors import BadRequest, NotFound
from obdal_common.ids import is_id
from obdal_common.schemas import (
    AppRecord,
    AuditQuery,
    ChatConfig,
    EraseAppRequest,
    HistoryErase,
    IngestDeleteApp,
    UsageQuery,
    WebhooksDeleteApp,
)
from obdal_gateway.console_auth import Caller
from obdal_gateway.dates import day_bounds, parse_date_range
from obdal_gateway.identity import public_app
from obdal_gateway.state import Gateway

__all__ = ["APP_HANDLERS", "app_or_404"]

_MAX_PAGE = 200
# litellm model ids: "provider/name", names with dots, colons, @ and dashes.
_MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,199}$"
_PRICE = msgspec.Meta(ge=0, le=10_000)
# Sessions per request when asking the chat to forget a deleted app's working context.
_ERASE_BATCH = 1000


class NewApp(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ChatSettingsBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An app's generation settings; a field left out or ``null`` uses the chat worker's default."""

    model: Annotated[str, msgspec.Meta(pattern=_MODEL_PATTERN)] | None = None
    system_prompt: Annotated[str, msgspec.Meta(min_length=1, max_length=8000)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=32768)] | None = None
    input_cost_per_mtok: Annotated[float, _PRICE] | None = None
    output_cost_per_mtok: Annotated[float, _PRICE] | None = None


async def app_or_404(gw: Gateway, app_id: str) -> AppRecord:
    """The app ``app_id`` names; 404 unless it exists."""
    if not is_id("app", app_id):
        raise NotFound(f"no app {app_id}", code="app_not_found")
    return await gw.apps.get(app_id)


@post("/apps", status_code=201, summary="Create an app (a tenant)", opt={"app_from": "none"})
async def create_app(gw: Gateway, caller: Caller, data: NewApp) -> dict[str, Any]:
    app = await gw.apps.create(data.name.strip())
    await gw.audit.record("app.created", app_id=app.app_id, actor=caller.actor, target=app.app_id)
    return public_app(app)


@get("/apps", summary="List apps (a console operator's: those they have a role on)", opt={"app_from": "any"})
async def list_apps(gw: Gateway, caller: Caller, usage_days: int | None = None) -> dict[str, Any]:
    """With ``usage_days`` (1-366), each app carries its ``usage`` totals over the last that many
    UTC days, today included (requests, tokens, cost), as ``GET /v1/usage`` counts them."""
    apps = [a for a in await gw.apps.list() if caller.may_see(a.app_id)]
    listed = [public_app(a) for a in apps]
    if usage_days is not None:
        if not 1 <= usage_days <= 366:
            raise BadRequest("usage_days must be between 1 and 366", code="invalid_usage_days")
        end = datetime.now(UTC).date()
        start = end - timedelta(days=usage_days - 1)
        reports = await asyncio.gather(
            *(
                gw.metering.usage(UsageQuery(app_id=a.app_id, start_date=start, end_date=end, limit=1))
                for a in apps
            )
        )
        for body, report in zip(listed, reports, strict=True):
            body["usage"] = {
                "start_date": start.isoformat(),
                "end_date": end.isoformat(),
                "total_requests": report.total_requests,
                "total_tokens": report.total_tokens,
                "total_cost": report.total_cost,
            }
    return {"apps": listed}


@get("/apps/{app_id:str}", summary="One app", opt={"role": "viewer"})
async def get_app(gw: Gateway, app_id: str) -> dict[str, Any]:
    return public_app(await app_or_404(gw, app_id))


async def _erase_app(gw: Gateway, app: AppRecord) -> dict[str, str]:
    """Everything of the app, each owner erasing its own, then the app's record; what went."""
    app_id = app.app_id
    keys = gw.keys.for_app(app_id)
    for key in keys:  # first: nothing can read or add to the app while it is erased
        await gw.keys.revoke(key.key_id)
    files = await gw.ingest.delete_app(IngestDeleteApp(app_id=app_id))
    erased = await gw.metering.erase_app(EraseAppRequest(app_id=app_id))
    hooks = await gw.webhooks.delete_app(WebhooksDeleteApp(app_id=app_id))
    for start in range(0, len(erased.session_ids), _ERASE_BATCH):
        batch = erased.session_ids[start : start + _ERASE_BATCH]
        await gw.chat.erase_history(HistoryErase(app_id=app_id, session_ids=batch))
    await gw.apps.delete(app_id)
    return {
        "name": app.name,
        "keys_revoked": str(len(keys)),
        "files": str(files.files_deleted),
        "sessions": str(len(erased.session_ids)),
        "webhooks": str(hooks.endpoints_deleted),
    }


@patch("/apps/{app_id:str}", summary="Rename an app", opt={"role": "owner"})
async def rename_app(gw: Gateway, caller: Caller, app_id: str, data: NewApp) -> dict[str, Any]:
    await app_or_404(gw, app_id)
    app = await gw.apps.rename(app_id, data.name.strip())
    await gw.audit.record(
        "app.renamed", app_id=app_id, actor=caller.actor, target=app_id, detail={"name": app.name}
    )
    return public_app(app)


@delete(
    "/apps/{app_id:str}",
    status_code=200,
    summary="Delete an app and everything of it (requires confirm=true)",
    opt={"role": "owner"},
)
async def delete_app(gw: Gateway, caller: Caller, app_id: str, confirm: str = "") -> dict[str, Any]:
    """Revokes every key of the app, erases its files, passages and curated answers, its
    sessions, ratings and analytics (and the chat's working context of them), then removes the
    app and every operator's role on it. Usage totals and the audit log stay (they hold no
    content). Each step is idempotent and the app's record goes last but one, so a failed
    deletion (503) can simply be repeated; a repeat after success answers 404."""
    if confirm != "true":
        raise BadRequest(
            "this erases the app and everything of it; repeat with ?confirm=true",
            code="confirmation_required",
        )
    try:
        app: AppRecord | None = await app_or_404(gw, app_id)
    except NotFound:
        app = None  # deleted already: only operators' roles on it may be left
    detail = await _erase_app(gw, app) if app is not None else {}
    # Last, so that a retry by an owner of only this app still passes the role check.
    operators = await gw.operators.drop_app(app_id)
    if app is None and not operators:
        raise NotFound(f"no app {app_id}", code="app_not_found")
    detail["operators"] = str(operators)
    await gw.audit.record("app.deleted", app_id=app_id, actor=caller.actor, target=app_id, detail=detail)
    return {"app_id": app_id, "deleted": True}


@get("/apps/{app_id:str}/chat", summary="An app's generation settings", opt={"role": "viewer"})
async def get_chat_settings(gw: Gateway, app_id: str) -> dict[str, Any]:
    app = await app_or_404(gw, app_id)
    body: dict[str, Any] = msgspec.to_builtins(app.chat or ChatConfig())
    return body


@put(
    "/apps/{app_id:str}/chat",
    summary="Set an app's model, system prompt, temperature, max tokens, price",
    opt={"role": "editor"},
)
async def set_chat_settings(
    gw: Gateway, caller: Caller, app_id: str, data: ChatSettingsBody
) -> dict[str, Any]:
    """Replaces the app's settings; chat workers use them from the next answer on. Prices
    (USD per million tokens) replace litellm's price map, for models it does not know."""
    await app_or_404(gw, app_id)
    if (data.input_cost_per_mtok is None) != (data.output_cost_per_mtok is None):
        raise BadRequest(
            "set both input_cost_per_mtok and output_cost_per_mtok, or neither", code="invalid_price"
        )
    config = ChatConfig(**msgspec.structs.asdict(data))
    await gw.apps.set_chat(app_id, config)
    changed = {k: str(v) for k, v in msgspec.structs.asdict(config).items() if k != "system_prompt"}
    changed["system_prompt"] = "custom" if config.system_prompt else "default"
    await gw.audit.record(
        "app.chat_changed", app_id=app_id, actor=caller.actor, target=app_id, detail=changed
    )
    body: dict[str, Any] = msgspec.to_builtins(config)
    return body


@get(
    "/audit",
    summary="The audit log, newest first, paged with next_cursor",
    opt={"role": "viewer", "app_from": "query"},
)
async def audit_log(
    gw: Gateway,
    app_id: str | None = None,
    action: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
) -> dict[str, Any]:
    """Optionally of one app (needed unless you own every app), one ``action``, and UTC days
    ``start_date``..``end_date`` (inclusive; either one alone as ``GET /v1/usage`` reads it);
    without dates, the whole log."""
    checked_limit(limit, most=_MAX_PAGE)
    if app_id is not None and not is_id("app", app_id):
        raise BadRequest("app_id is not an app id", code="invalid_app_id")
    if action is not None and not action.replace(".", "").replace("_", "").isalnum():
        raise BadRequest("action is not an audit action", code="invalid_action")
    before_at, before_id = decode_cursor(cursor) if cursor else (None, None)
    since, until = (
        day_bounds(*parse_date_range(start_date, end_date))
        if start_date is not None or end_date is not None
        else (None, None)
    )
    page = await gw.metering.audit(
        AuditQuery(
            limit=limit,
            app_id=app_id,
            action=action,
            before_at=before_at,
            before_id=before_id,
            since=since,
            until=until,
        )
    )
    return {
        "events": msgspec.to_builtins(page.items),
        "next_cursor": (
            encode_cursor(page.items[-1].occurred_at, page.items[-1].event_id) if page.has_more else None
        ),
    }


APP_HANDLERS = [
    create_app,
    list_apps,
    get_app,
    rename_app,
    delete_app,
    get_chat_settings,
    set_chat_settings,
    audit_log,
]
