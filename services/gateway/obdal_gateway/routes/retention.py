"""``/v1/admin/apps/{app_id}/retention``: how long an app's session content is kept."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Router, get, put

from obdal_common.schemas import RetentionPolicy, RetentionQuery
from obdal_gateway.auth import operator_guard
from obdal_gateway.console_auth import Caller, caller_dependency
from obdal_gateway.routes.admin_apps import app_or_404
from obdal_gateway.state import Gateway

__all__ = ["retention_router"]

# Ten years: longer is "forever", which is what leaving it unset means.
_MAX_TTL_DAYS = 3650


class RetentionBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``null`` keeps session content until it is erased."""

    session_ttl_days: Annotated[int, msgspec.Meta(ge=1, le=_MAX_TTL_DAYS)] | None


def _public(policy: RetentionPolicy) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(policy)
    return body


@get("/apps/{app_id:str}/retention", summary="An app's session retention", opt={"role": "viewer"})
async def get_retention(gw: Gateway, app_id: str) -> dict[str, Any]:
    await app_or_404(gw, app_id)
    return _public(await gw.metering.retention(RetentionQuery(app_id=app_id)))


@put(
    "/apps/{app_id:str}/retention",
    summary="Set how many days session content is kept",
    opt={"role": "editor"},
)
async def set_retention(gw: Gateway, caller: Caller, app_id: str, data: RetentionBody) -> dict[str, Any]:
    """Messages older than ``session_ttl_days`` are erased automatically (checked every few
    minutes); usage totals stay. ``null`` turns retention off."""
    await app_or_404(gw, app_id)
    policy = RetentionPolicy(app_id=app_id, session_ttl_days=data.session_ttl_days)
    body = _public(await gw.metering.set_retention(policy))
    await gw.audit.record(
        "retention.changed",
        app_id=app_id,
        actor=caller.actor,
        target=app_id,
        detail={"session_ttl_days": str(data.session_ttl_days)},
    )
    return body


retention_router = Router(
    path="/v1/admin",
    route_handlers=[get_retention, set_retention],
    guards=[operator_guard],
    dependencies=caller_dependency(),
    tags=["admin"],
)
