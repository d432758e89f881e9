"""The Widget page: how the app's chat widget looks, a live preview, and the tag to embed it.

The settings are the app's (``/v1/admin/apps/{app_id}/widget``), which the widget fetches when it
starts. The preview is the real ``widget.js`` in its preview mode (no key, panel open) on a page
of its own, framed by this one: the widget styles its shadow root with a ``<style>`` element,
which the console's own policy (no inline style) would refuse, so it gets a page whose policy
allows exactly that, and which only the console may frame.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlencode

from litestar import Request, get
from litestar.response import Template

from obdal_gateway.console.api_client import console_api
from obdal_gateway.console.render import CONSOLE, page, page_context
from obdal_gateway.security_headers import page_policy

__all__ = ["WIDGET_PAGES"]

_FIELDS: Final = ("title", "greeting", "color", "position", "placeholder")
_DEFAULT_COLOR: Final = "#2563eb"  # widget.js's own default
_PREVIEW_HEADERS: Final = {
    "Content-Security-Policy": page_policy(script="'self'", style="'unsafe-inline'", ancestors="'self'"),
    "X-Frame-Options": "SAMEORIGIN",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
}
_MAX_PREVIEW_CHARS: Final = 500


def _preview_query(settings: dict[str, Any]) -> str:
    return urlencode({k: settings[k] for k in _FIELDS if settings.get(k)})


@get("/apps/{app_id:str}/widget", include_in_schema=False)
async def widget_page(request: Request[Any, Any, Any], app_id: str) -> Template:
    ctx = await page_context(request, app_id=app_id)
    api = console_api(request)
    settings = await api.get(request, f"/v1/admin/apps/{ctx.app_id}/widget")
    # Listing keys needs the editor role; a viewer sees the settings and no snippet.
    keys = (await api.get(request, f"/v1/admin/apps/{ctx.app_id}/keys"))["keys"] if ctx.may("editor") else []
    publishable = [k for k in keys if k["kind"] == "publishable" and not k["revoked_at"]]
    gateway = f"{request.url.scheme}://{request.url.netloc}"
    return page(
        "widget_settings.html",
        ctx,
        active="widget",
        title="Widget",
        settings=settings,
        default_color=_DEFAULT_COLOR,
        preview_src=f"{CONSOLE}/apps/{ctx.app_id}/widget/preview?{_preview_query(settings)}",
        publishable=publishable,
        gateway=gateway,
    )


@get("/apps/{app_id:str}/widget/preview", include_in_schema=False)
async def widget_preview(request: Request[Any, Any, Any], app_id: str) -> Template:
    """The widget, open, with the look given in the query (the Widget page's form as it stands)."""
    await page_context(request, app_id=app_id)
    look = {k: v[:_MAX_PREVIEW_CHARS] for k in _FIELDS if (v := request.query_params.get(k))}
    return Template(template_name="widget_preview.html", context={"look": look}, headers=_PREVIEW_HEADERS)


WIDGET_PAGES = [widget_page, widget_preview]
