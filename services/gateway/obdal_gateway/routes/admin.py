"""``/v1/admin``: apps, keys and the audit log, guarded by the operator token."""

from __future__ import annotations

from typing import Any

from litestar import Router
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from obdal_gateway.auth import check_operator
from obdal_gateway.routes.admin_apps import APP_HANDLERS
from obdal_gateway.routes.admin_keys import KEY_HANDLERS
from obdal_gateway.state import Gateway

__all__ = ["admin_router", "operator_guard"]


def operator_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Router guard: runs before the body is read, so no admin input is parsed unauthenticated."""
    gw: Gateway = connection.app.state.gateway
    check_operator(connection, gw.admin_token)


admin_router = Router(
    path="/v1/admin",
    route_handlers=[*APP_HANDLERS, *KEY_HANDLERS],
    guards=[operator_guard],
    tags=["admin"],
)
