"""One sync of a website source: crawl it, and make its pages the app's documents.

Each page is a file of the app (:class:`~obdal_ingest.files.FileLifecycle`), so it is indexed,
cited, listed, metered and erased like an upload. A new page is uploaded; a changed one
replaces its file's content (the new version is indexed before the old one's passages go, as
``PUT /v1/files``); an unchanged one (a 304, or the same main content) costs its request and
nothing else; a page answering 404/410 at two syncs in a row is removed (once may be an outage).

The claim on the source (its lease) is renewed with the progress, by compare-and-set: a sync
that finds the record gone (the source deleted) or taken (its lease ran out and another worker
claimed it) stops at once, and removes a page it uploaded after the deletion.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

import msgspec
from nats.js.object_store import ObjectStore

from obdal_common.contract.ingest import stage
from obdal_common.errors import NotFound
from obdal_common.schemas import (
    FileReplace,
    FileUpload,
    PageError,
    SourcePage,
    SyncStats,
    WebsiteSource,
)
from obdal_ingest.crawler import CrawledPage, Crawler, CrawlPlan, Known
from obdal_ingest.files import FileLifecycle
from obdal_ingest.settings import IngestSettings
from obdal_ingest.sources import SourceStore, next_sync

__all__ = ["SourceSync", "SyncLost"]

log = logging.getLogger(__name__)

# How many page failures a source shows (the pages listing has every one).
_ERRORS_SHOWN = 20
# Progress (and the lease with it) is written at most this often.
_CHECKPOINT_S = 1.0
# A page answering 404/410 this many syncs in a row is removed.
_MISSES_TO_REMOVE = 2


class SyncLost(Exception):
    """The source was deleted, or its claim taken by another worker: this sync stops."""


@dataclass(slots=True)
class _Run:
    source: WebsiteSource
    known: dict[str, SourcePage]
    stats: SyncStats = field(default_factory=SyncStats)
    errors: list[PageError] = field(default_factory=list)
    files_of: dict[str, str] = field(default_factory=dict)  # this sync's URL -> file id
    first_error: PageError | None = None
    # What the app's page quota counts besides this sync's new pages: its other sources' pages
    # and bytes, and this source's own pages as the sync began.
    held_pages: int = 0
    held_bytes: int = 0
    added: int = 0  # new pages of this sync, and their bytes
    added_bytes: int = 0
    checkpoint_at: float = 0.0

    def count(self, **more: int) -> None:
        self.stats = msgspec.structs.replace(
            self.stats, **{k: getattr(self.stats, k) + v for k, v in more.items()}
        )

    def failed(self, url: str, code: str, message: str) -> None:
        error = PageError(url=url, code=code, message=message)
        self.first_error = self.first_error or error
        if len(self.errors) < _ERRORS_SHOWN:
            self.errors.append(error)


class SourceSync:
    def __init__(
        self,
        store: SourceStore,
        *,
        crawler: Crawler,
        files: FileLifecycle,
        objects: ObjectStore,
        settings: IngestSettings,
        worker_id: str,
    ) -> None:
        self._store = store
        self._crawler = crawler
        self._files = files
        self._objects = objects
        self._settings = settings
        self._worker_id = worker_id

    async def run(self, source: WebsiteSource) -> None:
        """Sync a source this worker has claimed; its record ends ``ready``
        (or ``failed``, when not one page could be read) with the sync's figures."""
        known = {page.url: page for page in await self._store.pages_of(source.app_id, source.source_id)}
        owned = [page for page in known.values() if page.owns_file]
        pages, held = await self._store.app_holdings(source.app_id, besides=source.source_id)
        run = _Run(
            source=source,
            known=known,
            held_pages=pages + len(owned),
            held_bytes=held + sum(page.size for page in owned),
        )
        plan = CrawlPlan(
            url=source.url,
            mode=source.mode,
            max_pages=source.max_pages,
            max_depth=source.max_depth,
            include=tuple(source.include),
            exclude=tuple(source.exclude),
        )
        validators = {
            url: Known(etag=p.etag, last_modified=p.last_modified, sha256=p.sha256 or None)
            if p.status in ("indexed", "duplicate")
            else Known()
            for url, p in known.items()
        }
        try:
            async for result in self._crawler.crawl(plan, known=validators):
                await self._page(run, result)
                await self._checkpoint(run)
            await self._finish(run)
        except SyncLost:
            log.info("source %s: deleted or claimed elsewhere; this sync stops", source.source_id)

    async def fail(self, source: WebsiteSource, message: str) -> None:
        """End a sync that broke off (a bug, a dependency down) as ``failed``, with the reason,
        rather than leave it to be retried each time its lease runs out."""
        now = self._store.now()
        with contextlib.suppress(SyncLost):
            await self._write(
                _Run(source=source, known={}),
                status="failed",
                error=message,
                error_code="sync_failed",
                progress=None,
                lease_owner="",
                lease_until=None,
                next_sync_at=next_sync(source.resync, after=now),
                updated_at=now,
            )

    # --- one result ------------------------------------------------------------------

    async def _page(self, run: _Run, result: CrawledPage) -> None:
        if result.outcome != "blocked":
            run.count(requests=1)
        previous = run.known.get(result.url)
        now = self._store.now()
        if result.outcome == "fetched":
            await self._fetched(run, result, previous)
        elif result.outcome == "unchanged" and previous is not None:
            run.count(found=1, unchanged=1)
            await self._store.put_page(
                msgspec.structs.replace(
                    previous,
                    last_seen_at=now,
                    misses=0,
                    etag=result.etag or previous.etag,
                    last_modified=result.last_modified or previous.last_modified,
                )
            )
            if previous.file_id:
                run.files_of[result.url] = previous.file_id
        elif result.outcome == "duplicate":
            holder = run.files_of.get(result.duplicate_of or "")
            if previous is not None and previous.owns_file and previous.file_id == holder:
                # The page holding the document, reached after an alias of it this time: unchanged.
                run.count(found=1, unchanged=1)
                await self._store.put_page(msgspec.structs.replace(previous, last_seen_at=now, misses=0))
                return
            run.count(found=1, duplicate=1)
            if previous is not None and previous.owns_file:
                await self._store.drop_page(previous)  # its content is another page's now
            await self._put(run, result, previous, status="duplicate", file_id=holder, owns=False)
        elif result.outcome == "gone":
            await self._gone(run, result, previous)
        elif result.outcome == "blocked":
            run.count(blocked=1)
            if previous is not None and previous.owns_file:
                await self._store.drop_page(previous)  # robots.txt or noindex now keeps it out
            await self._put(run, result, None, status="blocked", file_id=None, owns=False)
        else:
            run.count(failed=1)
            run.failed(
                result.url, result.error_code or "failed", result.error or "the page could not be read"
            )
            if previous is not None and previous.status in ("indexed", "duplicate"):
                # A failure of a page we have keeps the page we have (an outage is no deletion).
                await self._store.put_page(
                    msgspec.structs.replace(previous, error=result.error, error_code=result.error_code)
                )
                if previous.file_id:
                    run.files_of[result.url] = previous.file_id
            else:
                await self._put(run, result, previous, status="failed", file_id=None, owns=False)

    async def _fetched(self, run: _Run, result: CrawledPage, previous: SourcePage | None) -> None:
        source = run.source
        run.count(found=1)
        if previous is None or not previous.owns_file:
            refusal = self._over_quota(run, len(result.content))
            if refusal is not None:
                run.count(failed=1)
                run.failed(result.url, "page_quota_reached", refusal)
                return
        title = result.title or result.url
        sha256 = result.sha256 or hashlib.sha256(result.content).hexdigest()
        staged = await stage(self._objects, source.app_id, result.content)
        upload = FileUpload(
            app_id=source.app_id,
            filename=title[:500],
            content_type=result.content_type,
            size=len(result.content),
            sha256=sha256,
            staged=staged,
            source_id=source.source_id,
            url=result.url,
        )
        try:
            if previous is not None and previous.owns_file and previous.file_id:
                try:
                    accepted = await self._files.replace(
                        FileReplace(**msgspec.structs.asdict(upload), file_id=previous.file_id)
                    )
                except NotFound:  # deleted through /v1/files meanwhile: the page comes back
                    accepted = await self._files.upload(upload)
            else:
                accepted = await self._files.upload(upload)
        except Exception:
            await self._files.discard(staged)
            raise
        owns = not accepted.duplicate
        if owns:
            run.count(indexed=1)
            if previous is None or not previous.owns_file:
                run.added += 1
                run.added_bytes += len(result.content)
        else:
            run.count(duplicate=1)
        run.files_of[result.url] = accepted.file.file_id
        page = await self._put(
            run,
            result,
            previous,
            status="indexed" if owns else "duplicate",
            file_id=accepted.file.file_id,
            owns=owns,
            sha256=sha256,
            size=len(result.content),
        )
        try:
            await self._store.entry(source.app_id, source.source_id)
        except NotFound:
            await self._store.drop_page(page)  # the source was deleted while this page went in
            raise SyncLost from None

    async def _gone(self, run: _Run, result: CrawledPage, previous: SourcePage | None) -> None:
        if previous is None:
            # A link to nothing: the site's broken link, shown among the sync's errors.
            run.count(failed=1)
            run.failed(result.url, result.error_code or "gone", result.error or "the page does not exist")
            return
        misses = previous.misses + 1
        if misses >= _MISSES_TO_REMOVE:
            await self._store.drop_page(previous)
            run.count(removed=1)
            return
        run.count(found=1)
        await self._store.put_page(
            msgspec.structs.replace(
                previous,
                status="gone",
                misses=misses,
                error=result.error or "the page answered 404 or 410; removed if it does again",
                error_code="gone",
            )
        )
        if previous.file_id:
            run.files_of[result.url] = previous.file_id

    async def _put(
        self,
        run: _Run,
        result: CrawledPage,
        previous: SourcePage | None,
        *,
        status: str,
        file_id: str | None,
        owns: bool,
        sha256: str = "",
        size: int = 0,
    ) -> SourcePage:
        now = self._store.now()
        page = SourcePage(
            app_id=run.source.app_id,
            source_id=run.source.source_id,
            url=result.url,
            status=status,  # type: ignore[arg-type]
            first_seen_at=previous.first_seen_at if previous is not None else now,
            last_seen_at=now,
            title=result.title,
            file_id=file_id,
            owns_file=owns,
            content_type=result.content_type,
            size=size,
            sha256=sha256 or result.sha256,
            etag=result.etag,
            last_modified=result.last_modified,
            error=result.error or None,
            error_code=result.error_code or None,
            changed_at=now if status == "indexed" else (previous.changed_at if previous else None),
        )
        await self._store.put_page(page)
        return page

    def _over_quota(self, run: _Run, size: int) -> str | None:
        if run.held_pages + run.added + 1 > self._settings.app_max_pages:
            return (
                f"the app's website sources hold {self._settings.app_max_pages:,} pages, the most it"
                " may (OBDAL_APP_MAX_PAGES); this page was not added"
            )
        if run.held_bytes + run.added_bytes + size > self._settings.app_max_page_bytes:
            return (
                f"the app's website pages hold {self._settings.app_max_page_bytes:,} bytes, the most"
                " they may (OBDAL_APP_MAX_PAGE_BYTES); this page was not added"
            )
        return None

    # --- the record ----------------------------------------------------------------------

    async def _checkpoint(self, run: _Run) -> None:
        """Write the progress and renew the lease (at most every second): the claim holds."""
        if time.monotonic() - run.checkpoint_at < _CHECKPOINT_S:
            return
        now = self._store.now()
        lease = now + timedelta(seconds=self._settings.source_lease_s)
        await self._write(run, progress=run.stats, lease_until=lease, updated_at=now)
        run.checkpoint_at = time.monotonic()

    async def _finish(self, run: _Run) -> None:
        kept = [
            page
            for page in await self._store.pages_of(run.source.app_id, run.source.source_id)
            if page.status in ("indexed", "duplicate", "gone")
        ]
        now = self._store.now()
        nothing = run.stats.found == 0 and run.first_error is not None
        await self._write(
            run,
            status="failed" if nothing else "ready",
            error=run.first_error.message if nothing and run.first_error else None,
            error_code=run.first_error.code if nothing and run.first_error else None,
            pages=len(kept),
            bytes=sum(page.size for page in kept if page.owns_file),
            progress=None,
            last_sync=run.stats,
            last_sync_at=now,
            next_sync_at=next_sync(run.source.resync, after=now),
            errors=run.errors,
            lease_owner="",
            lease_until=None,
            updated_at=now,
        )
        log.info("source %s synced: %s", run.source.source_id, msgspec.json.encode(run.stats).decode())

    async def _write(self, run: _Run, **changes: object) -> None:
        try:
            current, revision = await self._store.entry(run.source.app_id, run.source.source_id)
        except NotFound:
            raise SyncLost from None
        if current.lease_owner != self._worker_id:
            raise SyncLost  # the lease ran out and another worker claimed the source
        updated = msgspec.structs.replace(current, **changes)
        if await self._store.swap(updated, revision) is None:
            raise SyncLost
        run.source = updated
