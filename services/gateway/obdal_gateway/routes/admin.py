"""``/v1/admin``: apps, keys and the audit log, guarded by the operator token."""

from __future__ import annotations

from litestar import Router

from obdal_gateway.auth import operator_guard
from obdal_gateway.routes.admin_apps import APP_HANDLERS
from obdal_gateway.routes.admin_keys import KEY_HANDLERS

__all__ = ["admin_router"]

admin_router = Router(
    path="/v1/admin",
    route_handlers=[*APP_HANDLERS, *KEY_HANDLERS],
    guards=[operator_guard],
    tags=["admin"],
)
