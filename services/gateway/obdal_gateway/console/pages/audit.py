"""An app's audit log: who did what, when, filtered by action and days, newest first.

Reads ``GET /v1/admin/audit?app_id=`` (a viewer of the app may); an actor that is an operator is
shown by e-mail, from ``GET /v1/admin/operators`` (which shows those on apps the reader owns:
for others the id is all the page has).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlencode

from litestar import Request, get
from litestar.response import Template

from obdal_gateway.console.api_client import console_api
from obdal_gateway.console.render import page, page_context

__all__ = ["AUDIT_PAGES"]

_PAGE_SIZE: Final = 50


@get("/apps/{app_id:str}/audit", include_in_schema=False)
async def audit_page(
    request: Request[Any, Any, Any],
    app_id: str,
    action: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    cursor: str | None = None,
) -> Template:
    ctx = await page_context(request, app_id=app_id)
    api = console_api(request)
    given = {"action": action, "start_date": start_date, "end_date": end_date}
    filters = {k: v for k, v in given.items() if v}
    log = await api.get(
        request,
        "/v1/admin/audit",
        params={"app_id": ctx.app_id, **filters, "limit": _PAGE_SIZE, "cursor": cursor},
    )
    operators = (await api.get(request, "/v1/admin/operators"))["operators"]
    names = {"operator": "the operator token", **{o["operator_id"]: o["email"] for o in operators}}
    next_cursor = log["next_cursor"]
    return page(
        "audit.html",
        ctx,
        active="audit",
        title="Audit log",
        events=[{**e, "actor_name": names.get(e["actor"] or "", e["actor"])} for e in log["events"]],
        filters={"action": action or "", "start_date": start_date or "", "end_date": end_date or ""},
        filtered=bool(filters),
        paged=cursor is not None,
        first_url="?" + urlencode(filters),
        next_url="?" + urlencode({**filters, "cursor": next_cursor}) if next_cursor else None,
    )


AUDIT_PAGES = [audit_page]
