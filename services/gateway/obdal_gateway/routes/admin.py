"""``/v1/admin``: apps, keys, operators and the audit log, guarded by the operator token or a
console session (by the operator's role)."""

from __future__ import annotations

from litestar import Router

from obdal_gateway.auth import operator_guard
from obdal_gateway.console_auth import caller_dependency
from obdal_gateway.routes.admin_apps import APP_HANDLERS
from obdal_gateway.routes.admin_keys import KEY_HANDLERS
from obdal_gateway.routes.admin_operators import OPERATOR_HANDLERS
from obdal_gateway.routes.export import admin_export_app, import_history
from obdal_gateway.routes.handoff_settings import HANDOFF_SETTINGS_HANDLERS
from obdal_gateway.routes.identity import IDENTITY_HANDLERS
from obdal_gateway.routes.widget_settings import WIDGET_SETTINGS_HANDLERS

__all__ = ["admin_router"]

admin_router = Router(
    path="/v1/admin",
    route_handlers=[
        *APP_HANDLERS,
        admin_export_app,
        import_history,
        *HANDOFF_SETTINGS_HANDLERS,
        *IDENTITY_HANDLERS,
        *KEY_HANDLERS,
        *OPERATOR_HANDLERS,
        *WIDGET_SETTINGS_HANDLERS,
    ],
    guards=[operator_guard],
    dependencies=caller_dependency(),
    tags=["admin"],
)
