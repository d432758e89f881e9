"""Website sources and their pages: the records (NATS KV, ingest's alone) and what the
:class:`~obdal_common.contract.Ingest` ``source_*`` RPCs do with them.

A source is one KV entry, changed only by compare-and-set, so the API's changes (a sync
requested, the source deleted) and a worker's (its claim, its progress) never overwrite each
other: the loser re-reads and decides again. Each page is one entry under the source's key
prefix, holding its document's id and the validators of the next conditional request. The
crawling itself is :mod:`obdal_ingest.syncs`; when it runs, :mod:`obdal_ingest.schedule`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import msgspec
from cronsim import CronSim, CronSimError
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from obdal_common import subjects
from obdal_common.contract.ingest import MAX_SOURCE_PAGES_LIMIT
from obdal_common.cursors import checked_limit, decode_group_cursor, encode_group_cursor
from obdal_common.errors import Conflict, NotFound, UnprocessableContent
from obdal_common.ids import is_id, new_id
from obdal_common.messaging import keys_matching, read_record
from obdal_common.outbound import OutboundClient
from obdal_common.schemas import (
    IngestDelete,
    SourceCreate,
    SourceDeleted,
    SourceList,
    SourceListQuery,
    SourceLookup,
    SourcePage,
    SourcePages,
    SourcePagesQuery,
    WebsiteSource,
    encode,
)
from obdal_ingest.files import FileLifecycle
from obdal_ingest.settings import IngestSettings

__all__ = ["SourceStore", "next_sync", "page_key"]

_MAX_URL_CHARS = 2048
_MAX_PATTERNS = 50
_SCHEDULES = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}


def _invalid(message: str) -> UnprocessableContent:
    return UnprocessableContent(message, code="invalid_source")


def next_sync(resync: str, *, after: datetime) -> datetime | None:
    """When a source synced at ``after`` is next due: ``None`` for ``off``."""
    if resync == "off":
        return None
    if resync in _SCHEDULES:
        return after + _SCHEDULES[resync]
    return next(iter(CronSim(resync, after.astimezone(UTC))))


def _check_resync(resync: str) -> None:
    if resync in ("off", *_SCHEDULES):
        return
    try:
        CronSim(resync, datetime.now(UTC))
    except CronSimError as exc:
        raise _invalid(
            f"resync must be 'off', 'daily', 'weekly' or a five-field cron expression ({exc})"
        ) from None


def page_key(app_id: str, source_id: str, url: str) -> str:
    return f"{app_id}.{source_id}.{hashlib.sha256(url.encode()).hexdigest()[:40]}"


def _source_key(app_id: str, source_id: str) -> str:
    return f"{app_id}.{source_id}"


class SourceStore:
    """Every website source of every app, and their pages."""

    def __init__(
        self,
        sources: KeyValue,
        pages: KeyValue,
        *,
        js: JetStreamContext,
        files: FileLifecycle,
        client: OutboundClient,
        settings: IngestSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sources = sources
        self._pages = pages
        self._js = js
        self._files = files
        self._client = client
        self._settings = settings
        self.now = clock

    # --- the RPCs ---------------------------------------------------------------

    async def create(self, req: SourceCreate) -> WebsiteSource:
        url = req.url.strip()
        self._validate(req, url)
        # Refused now, in words, rather than at its first sync: a URL that may never be fetched.
        await self._client.check_url(url)
        existing = await self._all(req.app_id)
        if len(existing) >= self._settings.max_sources_per_app:
            raise Conflict(
                f"the app has {len(existing)} website sources, the most it may have"
                " (OBDAL_MAX_SOURCES_PER_APP); delete one first",
                code="too_many_sources",
            )
        held = sum(s.pages for s in existing)
        if held >= self._settings.app_max_pages:
            raise Conflict(
                f"the app's website sources hold {held:,} pages, the most it may"
                " (OBDAL_APP_MAX_PAGES); delete a source first",
                code="page_quota_reached",
            )
        now = self.now()
        source = WebsiteSource(
            source_id=new_id("src"),
            app_id=req.app_id,
            url=url,
            mode=req.mode,
            max_pages=req.max_pages,
            max_depth=req.max_depth,
            include=req.include,
            exclude=req.exclude,
            resync=req.resync,
            status="queued",
            created_at=now,
            updated_at=now,
        )
        await self._sources.create(_source_key(source.app_id, source.source_id), encode(source))
        return source

    async def get(self, req: SourceLookup) -> WebsiteSource:
        return (await self.entry(req.app_id, req.source_id))[0]

    async def list_sources(self, req: SourceListQuery) -> SourceList:
        return SourceList(sources=sorted(await self._all(req.app_id), key=lambda s: s.created_at))

    async def pages(self, req: SourcePagesQuery) -> SourcePages:
        await self.get(SourceLookup(app_id=req.app_id, source_id=req.source_id))
        checked_limit(req.limit, most=MAX_SOURCE_PAGES_LIMIT)
        keys = await self.page_keys(req.app_id, req.source_id)
        if req.cursor:
            # Tied to the source: another source's cursor is refused, not misread.
            after = decode_group_cursor(req.cursor, req.source_id)
            keys = [k for k in keys if k > after]
        found: list[SourcePage] = []
        last = ""
        for key in keys:
            if len(found) == req.limit:
                break
            last = key
            page = await self.page_at(key)
            if page is not None and (req.status is None or page.status == req.status):
                found.append(page)
        more = bool(keys) and last != keys[-1]
        return SourcePages(
            pages=found, next_cursor=encode_group_cursor(req.source_id, last) if more else None
        )

    async def request_sync(self, req: SourceLookup) -> WebsiteSource:
        source, revision = await self.entry(req.app_id, req.source_id)
        if source.status in ("queued", "syncing"):
            raise Conflict(
                f"the source is already {source.status}; its sync will pick up every change",
                code="sync_in_progress",
            )
        queued = msgspec.structs.replace(source, status="queued", updated_at=self.now())
        if not await self.swap(queued, revision):
            raise Conflict("the source changed meanwhile; retry", code="source_changed")
        return queued

    async def delete(self, req: SourceLookup) -> SourceDeleted:
        await self.entry(req.app_id, req.source_id)
        # The record first: a sync in flight sees it gone at its next page and stops.
        await self._sources.purge(_source_key(req.app_id, req.source_id))
        pages, vectors = await self.remove_pages(req.app_id, req.source_id)
        return SourceDeleted(source_id=req.source_id, pages_deleted=pages, vectors_deleted=vectors)

    async def delete_app(self, app_id: str) -> int:
        """Every source of the app and its pages' records (its files go with the app's files)."""
        sources = await self._all(app_id)
        for source in sources:
            await self._sources.purge(_source_key(app_id, source.source_id))
            for key in await self.page_keys(app_id, source.source_id):
                await self._pages.purge(key)
        return len(sources)

    # --- for the sync and the scheduler --------------------------------------------

    async def entry(self, app_id: str, source_id: str) -> tuple[WebsiteSource, int]:
        if not is_id("src", source_id):
            raise NotFound(f"no source {source_id}", code="source_not_found")
        found = await read_record(self._sources, _source_key(app_id, source_id), WebsiteSource)
        if found is None:
            raise NotFound(f"no source {source_id}", code="source_not_found")
        return found

    async def swap(self, source: WebsiteSource, revision: int) -> int | None:
        """Write ``source`` if its record is still at ``revision``: the new revision, else ``None``."""
        try:
            return await self._sources.update(
                _source_key(source.app_id, source.source_id), encode(source), last=revision
            )
        except KeyWrongLastSequenceError:
            return None

    async def every_source(self) -> list[tuple[WebsiteSource, int]]:
        """Every app's sources with their revisions (the scheduler's look for due syncs)."""
        return await self._entries("*.*")

    async def page_keys(self, app_id: str, source_id: str) -> list[str]:
        return await keys_matching(self._js, subjects.KV_SOURCE_PAGES, f"{_source_key(app_id, source_id)}.*")

    async def page_at(self, key: str) -> SourcePage | None:
        found = await read_record(self._pages, key, SourcePage)
        return found[0] if found else None

    async def put_page(self, page: SourcePage) -> None:
        await self._pages.put(page_key(page.app_id, page.source_id, page.url), encode(page))

    async def drop_page(self, page: SourcePage) -> int:
        """Remove a page: its own file's passages first, then the file and the record; the
        passages deleted."""
        vectors = 0
        if page.owns_file and page.file_id:
            vectors = await self.delete_file(page.app_id, page.file_id)
        await self._pages.purge(page_key(page.app_id, page.source_id, page.url))
        return vectors

    async def delete_file(self, app_id: str, file_id: str) -> int:
        try:
            return (await self._files.delete(IngestDelete(app_id=app_id, file_id=file_id))).vectors_deleted
        except NotFound:
            return 0  # deleted through /v1/files meanwhile

    async def pages_of(self, app_id: str, source_id: str) -> list[SourcePage]:
        """Every page record of a source (a purged one is skipped)."""
        found = [await self.page_at(key) for key in await self.page_keys(app_id, source_id)]
        return [page for page in found if page is not None]

    async def remove_pages(self, app_id: str, source_id: str) -> tuple[int, int]:
        pages = await self.pages_of(app_id, source_id)
        vectors = [await self.drop_page(page) for page in pages]
        return len(pages), sum(vectors)

    async def app_holdings(self, app_id: str, *, besides: str) -> tuple[int, int]:
        """Pages and bytes the app's other sources hold (the app's quota counts them all)."""
        others = [s for s in await self._all(app_id) if s.source_id != besides]
        return sum(s.pages for s in others), sum(s.bytes for s in others)

    # --- internals --------------------------------------------------------------------

    async def _all(self, app_id: str) -> list[WebsiteSource]:
        return [source for source, _ in await self._entries(f"{app_id}.*")]

    async def _entries(self, pattern: str) -> list[tuple[WebsiteSource, int]]:
        """The sources whose keys match ``pattern``, with their revisions."""
        found = []
        for key in await keys_matching(self._js, subjects.KV_SOURCES, pattern):
            app_id, _, source_id = key.partition(".")
            try:
                found.append(await self.entry(app_id, source_id))
            except NotFound:
                continue  # deleted since the listing
        return found

    def _validate(self, req: SourceCreate, url: str) -> None:
        if not url or len(url) > _MAX_URL_CHARS:
            raise _invalid(f"url must be 1 to {_MAX_URL_CHARS} characters")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _invalid("url must be an absolute http:// or https:// address")
        cap = self._settings.max_source_pages
        if not 1 <= req.max_pages <= cap:
            raise _invalid(f"max_pages must be between 1 and {cap:,} (OBDAL_MAX_SOURCE_PAGES)")
        if not 0 <= req.max_depth <= 20:
            raise _invalid("max_depth must be between 0 and 20")
        for name, patterns in (("include", req.include), ("exclude", req.exclude)):
            if len(patterns) > _MAX_PATTERNS:
                raise _invalid(f"{name} may hold at most {_MAX_PATTERNS} patterns")
            for pattern in patterns:
                if not pattern.startswith("/") or len(pattern) > 500:
                    raise _invalid(f"{name} patterns are URL paths starting with '/', e.g. '/help/*'")
        _check_resync(req.resync)
