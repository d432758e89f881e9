"""Signing in, first-run setup, changing one's password, the apps list (the console's home)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Redirect, Template

from obdal_gateway.console.api_client import console_api
from obdal_gateway.console.render import CONSOLE, PAGE_HEADERS, page, page_context

__all__ = ["ACCOUNT_PAGES"]


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console page only, never another site (open redirect)."""
    if target and target.startswith(f"{CONSOLE}") and not target.startswith("//") and "\\" not in target:
        return target
    return CONSOLE


def _bare(name: str, title: str, **values: Any) -> Template:
    return Template(
        template_name=name, context={"title": title, "console": CONSOLE, **values}, headers=PAGE_HEADERS
    )


@get("/sign-in", include_in_schema=False)
async def sign_in_page(request: Request[Any, Any, Any], next: str | None = None) -> Template:
    gw = request.app.state.gateway
    return _bare("sign_in.html", "Sign in", next=_safe_next(next), first_run=not gw.operators.any())


@get("/setup", include_in_schema=False)
async def setup_page(request: Request[Any, Any, Any]) -> Template | Redirect:
    if request.app.state.gateway.operators.any():
        return Redirect(f"{CONSOLE}/sign-in")
    return _bare("setup.html", "Set up the console")


@get("/password", include_in_schema=False)
async def password_page(request: Request[Any, Any, Any]) -> Template:
    ctx = await page_context(request)
    return page("password.html", ctx, active="password", title="Your password")


@get("/", include_in_schema=False)
async def apps_page(request: Request[Any, Any, Any]) -> Template | Redirect:
    if "obdal_console" not in request.cookies:
        gw = request.app.state.gateway
        return Redirect(f"{CONSOLE}/sign-in" if gw.operators.any() else f"{CONSOLE}/setup")
    ctx = await page_context(request)
    listed = (await console_api(request).get(request, "/v1/admin/apps", params={"usage_days": 30}))["apps"]
    roles = ctx.me["operator"]["roles"]
    rows = [
        {
            "app_id": a["app_id"],
            "name": a["name"],
            "role": roles.get(a["app_id"]) or roles.get("*"),
            "requests": a["usage"]["total_requests"],
            "tokens": a["usage"]["total_tokens"],
            "cost": a["usage"]["total_cost"],
        }
        for a in listed
    ]
    return page("apps.html", ctx, active="apps", title="Apps", apps_rows=rows)


ACCOUNT_PAGES = [sign_in_page, setup_page, password_page, apps_page]
