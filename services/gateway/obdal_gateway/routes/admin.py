"""``/v1/admin``: apps and keys, guarded by the operator token."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Response, Router, get, post
from litestar import delete as delete_route
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from obdal_common.errors import BadRequest, NotFound
from obdal_common.ids import is_id
from obdal_common.schemas import KeyKind, KeyRecord
from obdal_gateway.auth import check_operator
from obdal_gateway.keys import ALL_SCOPES, DEFAULT_SCOPES, hash_key, new_key
from obdal_gateway.origins import InvalidOrigin, validate_allowed_origin
from obdal_gateway.state import Gateway

__all__ = ["admin_router", "operator_guard"]

_NAME = msgspec.Meta(min_length=1, max_length=200)


class NewApp(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, _NAME]


class NewKey(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, _NAME]
    kind: KeyKind = "secret"
    scopes: list[str] | None = None
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    expires_at: datetime | None = None


def _key_view(record: KeyRecord) -> dict[str, Any]:
    """A key as admins see it: everything but the hash."""
    body: dict[str, Any] = msgspec.to_builtins(record)
    body.pop("secret_hash", None)
    return body


def operator_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Router guard: runs before the body is read, so no admin input is parsed unauthenticated."""
    gw: Gateway = connection.app.state.gateway
    check_operator(connection, gw.admin_token)


async def _app_or_404(gw: Gateway, app_id: str) -> None:
    if not is_id("app", app_id):
        raise NotFound(f"no app {app_id}", code="app_not_found")
    await gw.apps.get(app_id)


@post("/apps", status_code=201, summary="Create an app (a tenant)")
async def create_app(gw: Gateway, data: NewApp) -> dict[str, Any]:
    app = await gw.apps.create(data.name.strip())
    await gw.audit.record("app.created", app_id=app.app_id, actor="operator", target=app.app_id)
    body: dict[str, Any] = msgspec.to_builtins(app)
    return body


@get("/apps", summary="List apps")
async def list_apps(gw: Gateway) -> dict[str, Any]:
    return {"data": msgspec.to_builtins(await gw.apps.list())}


@get("/apps/{app_id:str}", summary="One app")
async def get_app(gw: Gateway, app_id: str) -> dict[str, Any]:
    await _app_or_404(gw, app_id)
    body: dict[str, Any] = msgspec.to_builtins(await gw.apps.get(app_id))
    return body


@post("/apps/{app_id:str}/keys", status_code=201, summary="Create a key (the secret is shown once)")
async def create_key(gw: Gateway, app_id: str, data: NewKey) -> Response[dict[str, Any]]:
    await _app_or_404(gw, app_id)
    scopes = tuple(sorted(set(data.scopes))) if data.scopes is not None else DEFAULT_SCOPES[data.kind]
    unknown = set(scopes) - ALL_SCOPES
    if unknown:
        raise BadRequest(
            f"unknown scopes {sorted(unknown)}; known: {sorted(ALL_SCOPES)}", code="invalid_scope"
        )
    try:
        origins = tuple(dict.fromkeys(validate_allowed_origin(o) for o in data.allowed_origins))
    except InvalidOrigin as exc:
        raise BadRequest(str(exc), code="invalid_origin") from None
    if data.expires_at is not None and (
        data.expires_at.tzinfo is None or data.expires_at <= datetime.now(UTC)
    ):
        raise BadRequest("expires_at must be a future time with a timezone", code="invalid_expiry")
    key_id, secret = new_key(data.kind)
    record = KeyRecord(
        key_id=key_id,
        app_id=app_id,
        name=data.name.strip(),
        kind=data.kind,
        scopes=scopes,
        allowed_origins=origins,
        secret_hash=hash_key(secret),
        created_at=datetime.now(UTC),
        expires_at=data.expires_at,
    )
    await gw.keys.put(record)
    await gw.audit.record(
        "key.created", app_id=app_id, actor="operator", target=key_id, detail={"kind": data.kind}
    )
    return Response({**_key_view(record), "key": secret}, status_code=201)


@get("/apps/{app_id:str}/keys", summary="List an app's keys (never their secrets)")
async def list_keys(gw: Gateway, app_id: str) -> dict[str, Any]:
    await _app_or_404(gw, app_id)
    return {"data": [_key_view(k) for k in gw.keys.for_app(app_id)]}


@delete_route("/keys/{key_id:str}", status_code=200, summary="Revoke a key, at once, everywhere")
async def revoke_key(gw: Gateway, key_id: str) -> dict[str, Any]:
    if not is_id("key", key_id):
        raise NotFound(f"no key {key_id}", code="key_not_found")
    record = await gw.keys.revoke(key_id)
    await gw.audit.record("key.revoked", app_id=record.app_id, actor="operator", target=key_id)
    return _key_view(record)


admin_router = Router(
    path="/v1/admin",
    route_handlers=[create_app, list_apps, get_app, create_key, list_keys, revoke_key],
    guards=[operator_guard],
    tags=["admin"],
)
