"""The Keys page: an app's API keys, with what each may do and whether it still works.

Creating, editing, rotating and revoking are the browser's calls to ``/v1/admin/...keys``
(``static/keys.js`` shows a new secret once, from the API's answer; it is never stored, nor
rendered by the server). The page only reads the list and says, in words, each key's status.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Request, get
from litestar.response import Template

from obdal_gateway.console.api_client import console_api
from obdal_gateway.console.render import page, page_context
from obdal_gateway.keys import ALL_SCOPES, PUBLISHABLE_SCOPES

__all__ = ["KEY_PAGES", "key_status"]

# How long the old secret keeps working after a rotation: the choices offered.
_GRACE_CHOICES = [(0, "none"), (3600, "1 hour"), (86400, "1 day"), (7 * 86400, "7 days")]


def key_status(key: dict[str, Any], *, now: datetime) -> str:
    """``active``, ``revoked``, ``expired`` or ``rotated`` (its previous secret still in grace)."""
    if key["revoked_at"]:
        return "revoked"
    if key["expires_at"] and datetime.fromisoformat(key["expires_at"]) <= now:
        return "expired"
    grace = key["rotation_grace_until"]
    if grace and datetime.fromisoformat(grace) > now:
        return "rotated"
    return "active"


@get("/apps/{app_id:str}/keys", include_in_schema=False)
async def keys_page(request: Request[Any, Any, Any], app_id: str) -> Template:
    ctx = await page_context(request, app_id=app_id)
    listed = (await console_api(request).get(request, f"/v1/admin/apps/{ctx.app_id}/keys"))["keys"]
    now = datetime.now(UTC)
    rows = [{**k, "status": key_status(k, now=now)} for k in listed]
    # Newest first: the key just created or rotated is where the eye starts.
    rows.sort(key=lambda k: str(k["created_at"]), reverse=True)
    return page(
        "keys.html",
        ctx,
        active="keys",
        title="Keys",
        keys=rows,
        scopes=sorted(ALL_SCOPES),
        publishable_scopes=sorted(PUBLISHABLE_SCOPES),
        grace_choices=_GRACE_CHOICES,
    )


KEY_PAGES = [keys_page]
