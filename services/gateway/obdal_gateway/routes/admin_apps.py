"""``/v1/admin`` app endpoints and the audit log."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import get, post, put

from obdal_common.cursors import checked_limit, decode_cursor, encode_cursor
from obdal_common.errors import BadRequest, NotFound
from obdal_common.ids import is_id
from obdal_common.schemas import AppRecord, AuditQuery, ChatConfig
from obdal_gateway.state import Gateway

__all__ = ["APP_HANDLERS", "app_or_404"]

_MAX_PAGE = 200
# litellm model ids: "provider/name", names with dots, colons, @ and dashes.
_MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,199}$"
_PRICE = msgspec.Meta(ge=0, le=10_000)


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


@post("/apps", status_code=201, summary="Create an app (a tenant)")
async def create_app(gw: Gateway, data: NewApp) -> dict[str, Any]:
    app = await gw.apps.create(data.name.strip())
    await gw.audit.record("app.created", app_id=app.app_id, actor="operator", target=app.app_id)
    body: dict[str, Any] = msgspec.to_builtins(app)
    return body


@get("/apps", summary="List apps")
async def list_apps(gw: Gateway) -> dict[str, Any]:
    return {"apps": msgspec.to_builtins(await gw.apps.list())}


@get("/apps/{app_id:str}", summary="One app")
async def get_app(gw: Gateway, app_id: str) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(await app_or_404(gw, app_id))
    return body


@get("/apps/{app_id:str}/chat", summary="An app's generation settings")
async def get_chat_settings(gw: Gateway, app_id: str) -> dict[str, Any]:
    app = await app_or_404(gw, app_id)
    body: dict[str, Any] = msgspec.to_builtins(app.chat or ChatConfig())
    return body


@put("/apps/{app_id:str}/chat", summary="Set an app's model, system prompt, temperature, max tokens, price")
async def set_chat_settings(gw: Gateway, app_id: str, data: ChatSettingsBody) -> dict[str, Any]:
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
    await gw.audit.record("app.chat_changed", app_id=app_id, actor="operator", target=app_id, detail=changed)
    body: dict[str, Any] = msgspec.to_builtins(config)
    return body


@get("/audit", summary="The audit log, newest first, paged with next_cursor")
async def audit_log(
    gw: Gateway,
    app_id: str | None = None,
    action: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    checked_limit(limit, most=_MAX_PAGE)
    if app_id is not None and not is_id("app", app_id):
        raise BadRequest("app_id is not an app id", code="invalid_app_id")
    if action is not None and not action.replace(".", "").replace("_", "").isalnum():
        raise BadRequest("action is not an audit action", code="invalid_action")
    before_at, before_id = decode_cursor(cursor) if cursor else (None, None)
    page = await gw.metering.audit(
        AuditQuery(limit=limit, app_id=app_id, action=action, before_at=before_at, before_id=before_id)
    )
    return {
        "events": msgspec.to_builtins(page.items),
        "next_cursor": (
            encode_cursor(page.items[-1].occurred_at, page.items[-1].event_id) if page.has_more else None
        ),
    }


APP_HANDLERS = [create_app, list_apps, get_app, get_chat_settings, set_chat_settings, audit_log]
