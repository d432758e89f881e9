"""Operators and their roles: who may use the console, for the owners who manage them.

Reads ``GET /v1/admin/operators`` (which shows each owner the operators on apps they own, and
only those roles); adding one, changing or taking back a role, removing an account and resetting
a password are the browser's own calls to ``/v1/admin/operators``, which decides who may.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template

from obdal_gateway.console.api_client import console_api
from obdal_gateway.console.render import page, page_context
from obdal_gateway.operators import ALL_APPS, role_on

__all__ = ["OPERATOR_PAGES"]

_EVERY_APP = "Every app"


@get("/operators", include_in_schema=False)
async def operators_page(request: Request[Any, Any, Any]) -> Template:
    ctx = await page_context(request)
    mine = ctx.me["operator"]["roles"]
    owned = [a for a in ctx.apps if role_on(mine, a["app_id"]) == "owner"]
    if not owned and not ctx.owns_everything:
        return page("operators.html", ctx, active="operators", title="Operators", owner=False)
    names = {ALL_APPS: _EVERY_APP, **{a["app_id"]: a["name"] for a in ctx.apps}}
    listed = (await console_api(request).get(request, "/v1/admin/operators"))["operators"]
    operators = [
        {
            **o,
            "role_rows": sorted(
                ({"app_id": a, "app": names.get(a, a), "role": r} for a, r in o["roles"].items()),
                # Every app first, then by name.
                key=lambda row: (row["app_id"] != ALL_APPS, row["app"].lower()),
            ),
            "is_me": o["operator_id"] == ctx.me["operator"]["operator_id"],
        }
        for o in listed
    ]
    # One app first: a role on every app is the wider grant, never the one a form starts with.
    grantable = [{"app_id": a["app_id"], "name": a["name"]} for a in owned] + (
        [{"app_id": ALL_APPS, "name": _EVERY_APP}] if ctx.owns_everything else []
    )
    return page(
        "operators.html",
        ctx,
        active="operators",
        title="Operators",
        owner=True,
        operators=operators,
        grantable=grantable,
    )


OPERATOR_PAGES = [operators_page]
