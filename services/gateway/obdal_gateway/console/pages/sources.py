"""The Websites pages: the app's website sources, how each one's syncs went, and its pages.

``/websites`` lists the sources (``GET /v1/sources``) with their status in words and, for
editors, the form that adds one; ``/websites/{id}`` shows a source (``GET /v1/sources/{id}``),
its errors and a page of its pages (``GET /v1/sources/{id}/pages``, the API's cursor). The
browser adds, syncs and deletes through ``/v1/sources`` itself, and follows a source that is
queued or syncing until it is ready or has failed (``static/sources.js``, which words a status
as :func:`status_words` does here).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

from litestar import Request, get
from litestar.response import Template

from obdal_gateway.console.api_client import console_api
from obdal_gateway.console.render import page, page_context

__all__ = ["SOURCE_PAGES", "ago", "status_words"]

_PAGES_PER_PAGE: Final = 50
MODES: Final = {
    "crawl": "Crawl: follow the links from this address",
    "sitemap": "Sitemap: the pages the site's sitemap lists",
    "page": "Page: this address alone",
}
# What a sync's figures mean, in the order the pages show them.
FIGURES: Final = (
    ("found", "found"),
    ("indexed", "indexed"),
    ("unchanged", "unchanged"),
    ("duplicate", "duplicates"),
    ("failed", "failed"),
    ("blocked", "blocked"),
    ("removed", "removed"),
)


def _pages(n: int) -> str:
    return "1 page" if n == 1 else f"{n:,} pages"


def ago(iso: str, now: datetime) -> str:
    """How long before ``now`` the API's timestamp ``iso`` was, as a person says it."""
    seconds = max(0, int((now - datetime.fromisoformat(iso)).total_seconds()))
    for size, unit in ((86_400, "day"), (3_600, "hour"), (60, "minute")):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'' if n == 1 else 's'} ago"
    return "just now"


def status_words(source: dict[str, Any], now: datetime) -> str:
    """A source's status as a sentence ("Ready: 110 pages, synced 3 minutes ago")."""
    status = source["status"]
    if status == "queued":
        return "Queued: the sync starts in a moment"
    if status == "syncing":
        found = (source["progress"] or {}).get("found", 0)
        return f"Syncing: {_pages(found)} so far"
    if status == "failed":
        return f"Failed: {source['error'] or 'the sync did not finish'}"
    synced = f", synced {ago(source['last_sync_at'], now)}" if source["last_sync_at"] else ""
    return f"Ready: {_pages(source['pages'])}{synced}"


def _shown(source: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {**source, "words": status_words(source, now), "path": quote(source["source_id"], safe="")}


@get("/apps/{app_id:str}/websites", include_in_schema=False)
async def sources_page(request: Request[Any, Any, Any], app_id: str, added: str | None = None) -> Template:
    ctx = await page_context(request, app_id=app_id)
    listed = (await console_api(request).get(request, "/v1/sources", app_id=ctx.app_id))["sources"]
    now = datetime.now(UTC)
    # Newest first: what was just added is what one looks for.
    sources = [
        _shown(s, now) for s in sorted(listed, key=lambda s: (s["created_at"], s["source_id"]), reverse=True)
    ]
    return page(
        "sources.html",
        ctx,
        active="websites",
        title="Websites",
        sources=sources,
        added=next((s for s in sources if s["source_id"] == added), None),
        modes=MODES,
        figures=FIGURES,
    )


@get("/apps/{app_id:str}/websites/{source_id:str}", include_in_schema=False)
async def source_page(
    request: Request[Any, Any, Any], app_id: str, source_id: str, cursor: str | None = None
) -> Template:
    ctx = await page_context(request, app_id=app_id)
    api = console_api(request)
    path = f"/v1/sources/{quote(source_id, safe='')}"
    source = await api.get(request, path, app_id=ctx.app_id)
    listed = await api.get(
        request, f"{path}/pages", app_id=ctx.app_id, params={"limit": _PAGES_PER_PAGE, "cursor": cursor}
    )
    return page(
        "source.html",
        ctx,
        active="websites",
        title="Website",
        source=_shown(source, datetime.now(UTC)),
        source_path=path,
        pages=listed["pages"],
        next_cursor=listed["next_cursor"],
        paged=cursor is not None,
        page_size=_PAGES_PER_PAGE,
        modes=MODES,
        figures=FIGURES,
    )


SOURCE_PAGES = [sources_page, source_page]
