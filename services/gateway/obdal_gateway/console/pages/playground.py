"""The Playground page: ask an app a question before its widget goes live.

The browser calls ``POST /v1/chat`` itself (``static/playground.js``) with the operator's console
session standing for a key (the ``chat`` scope: editors and owners), reads the answer's event
stream as it arrives and shows its sources, tokens and cost; the next question continues the same
session, as a customer's would. Nothing to read here beforehand, so the page is only its form.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template

from obdal_gateway.console.render import page, page_context

__all__ = ["PLAYGROUND_PAGES"]


@get("/apps/{app_id:str}/playground", include_in_schema=False)
async def playground_page(request: Request[Any, Any, Any], app_id: str) -> Template:
    ctx = await page_context(request, app_id=app_id)
    return page("playground.html", ctx, active="playground", title="Playground")


PLAYGROUND_PAGES = [playground_page]
