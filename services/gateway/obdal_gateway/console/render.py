"""What every console page shares: who is signed in, the app it is about, the layout, the policy.

A page handler calls :func:`page_context` (which asks the API who the operator is and which apps
they have) and returns :func:`page`. Without a live session the API answers 401 and the visitor
is sent to the sign-in page; any other API error becomes the error page with the API's message.
Templates are Jinja with autoescaping, so every string an app, a document or a customer supplied
is rendered as text, never markup; pages run no inline script (the Content-Security-Policy below).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig

from obdal_common.errors import NotFound, ObdalError, Unauthorized
from obdal_common.schemas import OperatorRole
from obdal_gateway.console.api_client import console_api
from obdal_gateway.operators import ALL_APPS, at_least, role_on
from obdal_gateway.security_headers import page_policy

__all__ = [
    "CONSOLE",
    "PAGE_HEADERS",
    "PageContext",
    "console_error",
    "page",
    "page_context",
    "template_config",
]

CONSOLE: Final = "/console"
_HERE = Path(__file__).parent
# Our own script and styles only; the widget preview's frame is ours too. No inline script,
# no eval, no third-party origin.
PAGE_HEADERS: Final = {
    "Content-Security-Policy": page_policy(
        script="'self'", style="'self'", img="'self' data:", connect="'self'", frame="'self'", form="'self'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
}


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    environment = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


@dataclass(frozen=True, slots=True)
class PageContext:
    """The signed-in operator, their apps, and (on an app's pages) that app and their role on it."""

    me: dict[str, Any]
    apps: list[dict[str, Any]]
    app: dict[str, Any] | None = None
    role: OperatorRole | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def app_id(self) -> str:
        assert self.app is not None
        return str(self.app["app_id"])

    def may(self, least: OperatorRole) -> bool:
        """Whether the operator's role on this app is at least ``least`` (to show a control; the
        API decides whether it works)."""
        return at_least(self.role, least)

    @property
    def owns_everything(self) -> bool:
        return bool(self.me["operator"]["roles"].get(ALL_APPS) == "owner")


async def page_context(request: Request[Any, Any, Any], *, app_id: str | None = None) -> PageContext:
    api = console_api(request)
    me, listed = await asyncio.gather(api.get(request, "/v1/console/me"), api.get(request, "/v1/admin/apps"))
    apps = listed["apps"]
    if app_id is None:
        return PageContext(me=me, apps=apps)
    app = next((a for a in apps if a["app_id"] == app_id), None)
    if app is None:
        raise NotFound("no such app, or you have no role on it", code="app_not_found")
    return PageContext(me=me, apps=apps, app=app, role=role_on(me["operator"]["roles"], app_id))


def page(name: str, ctx: PageContext, *, active: str, title: str, **values: Any) -> Template:
    """Render ``templates/<name>`` in the layout, with the operator, their apps and the CSRF token."""
    return Template(
        template_name=name,
        context={"ctx": ctx, "active": active, "title": title, "console": CONSOLE, **values},
        headers=PAGE_HEADERS,
    )


def console_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The console router's error handler: sign in again on 401, else the error page."""
    if isinstance(exc, Unauthorized):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(f"{CONSOLE}/sign-in?next={quote(target, safe='')}")
    error = exc if isinstance(exc, ObdalError) else ObdalError("the console could not show this page")
    return Template(
        template_name="error.html",
        context={"status": error.status, "message": str(error), "code": error.code, "console": CONSOLE},
        status_code=error.status,
        headers=PAGE_HEADERS,
    )
