"""The Documents page: what an app knows, and how far along each file is.

It lists the app's files (``GET /v1/files``) with their ingestion status, its reason when one
failed, chunk and token counts. The browser uploads (many files, or whole folders, with per-file
progress), replaces and deletes through ``/v1/files`` itself (``static/documents.js``) and follows
each new file's status until it is ready or has failed.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template

from obdal_gateway.console.api_client import console_api
from obdal_gateway.console.render import page, page_context

__all__ = ["DOCUMENT_PAGES"]


@get("/apps/{app_id:str}/documents", include_in_schema=False)
async def documents_page(request: Request[Any, Any, Any], app_id: str) -> Template:
    ctx = await page_context(request, app_id=app_id)
    listed = (await console_api(request).get(request, "/v1/files", app_id=ctx.app_id))["files"]
    # Newest first: what was just uploaded is what one looks for.
    files = sorted(listed, key=lambda f: (f["created_at"], f["file_id"]), reverse=True)
    return page("documents.html", ctx, active="documents", title="Documents", files=files)


DOCUMENT_PAGES = [documents_page]
