"""An app's settings: how it answers (model, persona, temperature, answer length, prices) and how
long its conversations are kept.

Reads ``GET /v1/admin/apps/{id}/chat`` and ``.../retention``; saving is the browser's own
``PUT`` to each, so the API's validation (and its role check: editors and owners) is the only one.
Owners also make, rotate or remove the identity secret signed-in customers are verified with
(``.../identity-secret``, docs/identity.md); the browser shows a new secret once.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template

from obdal_gateway.console.api_client import console_api
from obdal_gateway.console.render import page, page_context

__all__ = ["SETTINGS_PAGES"]


@get("/apps/{app_id:str}/settings", include_in_schema=False)
async def settings_page(request: Request[Any, Any, Any], app_id: str) -> Template:
    ctx = await page_context(request, app_id=app_id)
    api = console_api(request)
    chat = await api.get(request, f"/v1/admin/apps/{ctx.app_id}/chat")
    retention = await api.get(request, f"/v1/admin/apps/{ctx.app_id}/retention")
    return page(
        "settings.html",
        ctx,
        active="settings",
        title="Settings",
        chat=chat,
        retention=retention,
        identity=(ctx.app or {}).get("identity_verification", {"enabled": False}),
    )


SETTINGS_PAGES = [settings_page]
