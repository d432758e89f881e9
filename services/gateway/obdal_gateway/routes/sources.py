"""``/v1/sources``: websites as sources — crawled, kept in sync, each page one of the app's documents.

Ingest owns sources, their pages and the crawling (:class:`~obdal_common.contract.Ingest`,
docs/ingestion.md "Websites"); this route only shapes the HTTP side. Pages are documents, so
sources take the scopes of ``/v1/files``: ``files:read`` to read, ``files:write`` to change.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Response, delete, get, post
from litestar.openapi import ResponseSpec

from obdal_common.contract.ingest import MAX_SOURCE_PAGES_LIMIT
from obdal_common.cursors import checked_cursor, checked_limit
from obdal_common.schemas import (
    PageState,
    SourceCreate,
    SourceListQuery,
    SourceLookup,
    SourceMode,
    SourcePage,
    SourcePagesQuery,
    WebsiteSource,
)
from obdal_gateway.auth import Principal
from obdal_gateway.state import Gateway

__all__ = [
    "SOURCE_HANDLERS",
    "NewSource",
    "create_source",
    "delete_source",
    "get_source",
    "list_source_pages",
    "list_sources",
    "public_source",
    "sync_source",
]

_BODY_MAX_BYTES = 64 * 1024
_NOT_FOUND = ResponseSpec(
    data_container=dict[str, Any], description="`source_not_found`: no source of the app has this id"
)


class NewSource(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A website to crawl. ``mode``: ``crawl`` follows links from ``url`` (same host; ``max_depth``
    links deep), ``sitemap`` takes the pages a sitemap (or the site's, found from ``url``) lists,
    ``page`` is ``url`` alone. ``include``/``exclude``: URL path patterns (``/help/*``).
    ``resync``: ``off``, ``daily``, ``weekly`` or a five-field cron expression (UTC)."""

    url: str
    type: Literal["website"] = "website"
    mode: SourceMode = "crawl"
    max_pages: int = 100
    max_depth: int = 3
    include: list[str] = msgspec.field(default_factory=list)
    exclude: list[str] = msgspec.field(default_factory=list)
    resync: str = "off"


def public_source(source: WebsiteSource) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(source)
    for internal in ("app_id", "lease_owner", "lease_until"):  # ingest's business
        body.pop(internal, None)
    return body


def _public_page(page: SourcePage) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(page)
    for internal in ("app_id", "owns_file", "sha256"):
        body.pop(internal, None)
    return body


@post(
    "/v1/sources",
    status_code=202,
    summary="Add a website: it is crawled now, and again on its resync schedule",
    opt={"scope": "files:write"},
    request_max_body_size=_BODY_MAX_BYTES,
    responses={
        409: ResponseSpec(
            data_container=dict[str, Any],
            description="`too_many_sources` or `page_quota_reached`: the app holds as much as it may",
        ),
        422: ResponseSpec(
            data_container=dict[str, Any],
            description="`invalid_source` (a field, named), or why the URL may not be fetched: "
            "`private_address`, `scheme_not_allowed`, `credentials_in_url`, `unresolvable`, …",
        ),
    },
)
async def create_source(principal: Principal, gw: Gateway, data: NewSource) -> dict[str, Any]:
    """Answers at once with the source, ``queued``; follow ``GET /v1/sources/{id}``."""
    created = await gw.ingest.source_create(
        SourceCreate(
            app_id=principal.app_id,
            url=data.url,
            mode=data.mode,
            max_pages=data.max_pages,
            max_depth=data.max_depth,
            include=data.include,
            exclude=data.exclude,
            resync=data.resync,
        )
    )
    await gw.audit.record(
        "source.created",
        app_id=principal.app_id,
        actor=principal.key_id,
        target=created.source_id,
        detail={"url": created.url},
    )
    return public_source(created)


@get("/v1/sources", summary="The app's website sources", opt={"scope": "files:read"})
async def list_sources(principal: Principal, gw: Gateway) -> dict[str, Any]:
    listed = await gw.ingest.source_list(SourceListQuery(app_id=principal.app_id))
    return {"sources": [public_source(s) for s in listed.sources]}


@get(
    "/v1/sources/{source_id:str}",
    summary="A website source: its status, pages and last sync",
    opt={"scope": "files:read"},
    responses={404: _NOT_FOUND},
)
async def get_source(principal: Principal, gw: Gateway, source_id: str) -> dict[str, Any]:
    return public_source(
        await gw.ingest.source_get(SourceLookup(app_id=principal.app_id, source_id=source_id))
    )


@get(
    "/v1/sources/{source_id:str}/pages",
    summary="A source's pages, with each one's document and state (cursor pagination)",
    opt={"scope": "files:read"},
    responses={404: _NOT_FOUND},
)
async def list_source_pages(
    principal: Principal,
    gw: Gateway,
    source_id: str,
    limit: int = 100,
    cursor: str | None = None,
    status: PageState | None = None,
) -> dict[str, Any]:
    """Pass ``next_cursor`` back as ``cursor`` for the next page; ``status`` keeps one state."""
    checked_limit(limit, most=MAX_SOURCE_PAGES_LIMIT)
    found = await gw.ingest.source_pages(
        SourcePagesQuery(
            app_id=principal.app_id,
            source_id=source_id,
            limit=limit,
            cursor=checked_cursor(cursor),
            status=status,
        )
    )
    return {"pages": [_public_page(p) for p in found.pages], "next_cursor": found.next_cursor}


@post(
    "/v1/sources/{source_id:str}/sync",
    status_code=202,
    summary="Sync a website source now",
    opt={"scope": "files:write"},
    responses={
        404: _NOT_FOUND,
        409: ResponseSpec(data_container=dict[str, Any], description="`sync_in_progress`"),
    },
)
async def sync_source(principal: Principal, gw: Gateway, source_id: str) -> dict[str, Any]:
    queued = await gw.ingest.source_sync(SourceLookup(app_id=principal.app_id, source_id=source_id))
    await gw.audit.record(
        "source.sync_requested", app_id=principal.app_id, actor=principal.key_id, target=source_id
    )
    return public_source(queued)


@delete(
    "/v1/sources/{source_id:str}",
    status_code=200,
    summary="Delete a website source and every page of it",
    description="Every page's passages are gone before this answers (as a file's deletion).",
    opt={"scope": "files:write"},
    responses={404: _NOT_FOUND},
)
async def delete_source(principal: Principal, gw: Gateway, source_id: str) -> Response[dict[str, Any]]:
    deleted = await gw.ingest.source_delete(SourceLookup(app_id=principal.app_id, source_id=source_id))
    await gw.audit.record(
        "source.deleted",
        app_id=principal.app_id,
        actor=principal.key_id,
        target=source_id,
        detail={"pages": str(deleted.pages_deleted)},
    )
    return Response(
        {
            "source_id": source_id,
            "deleted": True,
            "pages_deleted": deleted.pages_deleted,
            "vectors_deleted": deleted.vectors_deleted,
        }
    )


SOURCE_HANDLERS = [create_source, list_sources, get_source, list_source_pages, sync_source, delete_source]
