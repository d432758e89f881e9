"""An app's settings: how it answers (model, persona, temperature, answer length, prices), how
long its conversations are kept, and whether customers may ask for a person (docs/handoff.md).

Reads ``GET /v1/admin/apps/{id}/chat``, ``.../retention`` and ``.../handoff``; saving is the
browser's own ``PUT`` to each, so the API's validation (and its role check: editors and owners) is
the only one.
Owners also make, rotate or remove the identity secret signed-in customers are verified with
(``.../identity-secret``, docs/identity.md); the browser shows a new secret once.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from litestar import Request, get
from litestar.response import Template

from obdal_gateway.console.api_client import console_api
from obdal_gateway.console.render import page, page_context

__all__ = ["SETTINGS_PAGES"]

# What the widget asks a customer who wants a person for (``ask_contact``), in words.
CONTACT_CHOICES: Final = [
    ("off", "Nothing: hand the conversation over at once"),
    ("optional", "Their e-mail and name, which they may skip"),
    ("required", "Their e-mail, which they must give"),
]


@get("/apps/{app_id:str}/settings", include_in_schema=False)
async def settings_page(request: Request[Any, Any, Any], app_id: str) -> Template:
    ctx = await page_context(request, app_id=app_id)
    api = console_api(request)
    base = f"/v1/admin/apps/{ctx.app_id}"
    chat, retention, handoff = await asyncio.gather(
        api.get(request, f"{base}/chat"),
        api.get(request, f"{base}/retention"),
        api.get(request, f"{base}/handoff"),
    )
    return page(
        "settings.html",
        ctx,
        active="settings",
        title="Settings",
        chat=chat,
        retention=retention,
        handoff=handoff,
        contact_choices=CONTACT_CHOICES,
        identity=(ctx.app or {}).get("identity_verification", {"enabled": False}),
    )


SETTINGS_PAGES = [settings_page]
