"""One ingest job: read the bytes, parse, chunk, embed and index, report status and progress."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import PurePosixPath

from nats.js import JetStreamContext
from nats.js.errors import ObjectNotFoundError
from nats.js.object_store import ObjectStore
from opentelemetry import trace

from obdal_common.errors import ObdalError
from obdal_common.hooks import publish_hook
from obdal_common.schemas import FileState, IngestJob
from obdal_ingest.chunking import estimate_tokens
from obdal_ingest.indexing import IndexWriter
from obdal_ingest.parser_pool import ParserPool
from obdal_ingest.quotas import IngestQuota
from obdal_ingest.settings import IngestSettings
from obdal_ingest.statuses import FileStatusStore
from obdal_retrieval import Chunk

__all__ = ["IngestPipeline", "passages"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

# Share of the progress bar given to parsing; embedding and indexing fill the rest.
_PARSED_PERCENT = 10


class IngestPipeline:
    def __init__(
        self,
        settings: IngestSettings,
        *,
        index: IndexWriter,
        objects: ObjectStore,
        statuses: FileStatusStore,
        parsers: ParserPool,
        quota: IngestQuota,
        js: JetStreamContext,
    ) -> None:
        self._settings = settings
        self._js = js
        self._index = index
        self._objects = objects
        self._parsers = parsers
        self._quota = quota
        self.statuses = statuses

    async def report(self, job: IngestJob, state: FileState, **changes: object) -> bool:
        """Record the job's state; ``False`` if the file was deleted or replaced meanwhile."""
        updated = await self.statuses.update(job.app_id, job.file_id, state, version=job.version, **changes)
        if updated is not None and state in ("ready", "failed"):
            await publish_hook(
                self._js,
                "file.ready" if state == "ready" else "file.failed",
                app_id=job.app_id,
                data={
                    "file_id": updated.file_id,
                    "filename": updated.filename,
                    "version": updated.version,
                    "chunks": updated.chunks,
                    "error": updated.error,
                    "error_code": updated.error_code,
                    "source_id": updated.source_id,
                    "url": updated.url,
                },
                # One event per version's outcome, however often a redelivered job reports it.
                event_id=f"file.{updated.file_id}.{updated.version}",
                give_up_after=self._settings.event_publish_retry_s,
            )
        return updated is not None

    async def run(self, job: IngestJob) -> int:
        """Index the job's file; returns the chunk count. Raises ParseError for unreadable files.

        The new version is fully indexed before the previous version's passages
        are removed, so a replaced file is always answerable.
        """
        span = trace.get_current_span()
        span.set_attribute("obdal.app_id", job.app_id)
        span.set_attribute("obdal.file_id", job.file_id)
        if not await self.report(
            job, "processing", progress=0, started_at=datetime.now(UTC), error=None, error_code=None
        ):
            log.info(
                "file %s v%d was deleted or replaced before ingestion; skipping", job.file_id, job.version
            )
            return 0
        await self._quota.check(job.app_id)  # an app whose hour is used up: not even parsed
        try:
            result = await self._objects.get(job.object_name)
        except ObjectNotFoundError:
            current = await self.statuses.get(job.app_id, job.file_id)
            if current is None or current.version != job.version:
                # Replaced or deleted since the check above: its bytes went with that version.
                log.info("file %s v%d was deleted or replaced meanwhile; skipping", job.file_id, job.version)
                return 0
            # Gone for good (e.g. the uploader gave up and withdrew them): no retry can help.
            raise ObdalError("the file's bytes are no longer stored; upload it again") from None
        with tracer.start_as_current_span("ingest.parse"):
            chunks, pages = await passages(
                self._parsers,
                self._settings,
                result.data or b"",
                app_id=job.app_id,
                file_id=job.file_id,
                filename=job.filename,
                content_type=job.content_type,
                version=job.version,
                url=job.url,
            )
        await self._quota.charge(job.app_id, len(chunks))  # before any chunk is embedded
        tokens = sum(estimate_tokens(c.text) for c in chunks)
        if not await self.report(job, "processing", progress=_PARSED_PERCENT, pages=pages):
            return 0
        with tracer.start_as_current_span("ingest.index") as ispan:
            # Re-delivery overwrites: chunk point ids are deterministic per file, version and position.
            batch = self._settings.embed_batch_size
            for start in range(0, len(chunks), batch):
                await self._index.add(chunks[start : start + batch])
                done = min(len(chunks), start + batch)
                progress = _PARSED_PERCENT + (100 - _PARSED_PERCENT) * done // len(chunks)
                await self.report(job, "processing", progress=min(99, progress))
            ispan.set_attribute("obdal.chunks", len(chunks))
        replaced = await self._index.delete_file(job.app_id, job.file_id, except_version=job.version)
        if replaced:
            log.info("file %s: %d passages of earlier versions removed", job.file_id, replaced)
        ready = await self.report(
            job, "ready", chunks=len(chunks), tokens=tokens, progress=100, finished_at=datetime.now(UTC)
        )
        if not ready and await self.statuses.get(job.app_id, job.file_id) is None:
            # Deleted while we indexed it: remove what we just wrote.
            await self._index.delete_file(job.app_id, job.file_id)
        return len(chunks)


async def passages(
    parsers: ParserPool,
    settings: IngestSettings,
    data: bytes,
    *,
    app_id: str,
    file_id: str,
    filename: str,
    content_type: str,
    version: int,
    url: str | None,
) -> tuple[list[Chunk], int | None]:
    """A file's bytes parsed and chunked the way ingest indexes them (the index's point ids
    follow from app, file, version and position, so indexing them again overwrites): its
    chunks and page count. Also what a restore re-indexes with (obdal.backup)."""
    extracted = await parsers.extract(
        data,
        content_type=content_type,
        max_pages=settings.max_pages,
        target_tokens=settings.chunk_tokens,
        overlap_tokens=settings.chunk_overlap_tokens,
        max_chars=settings.max_file_chars,
        max_chunks=settings.max_file_chunks,
    )
    # A website page's filename is its title already; a file's is its name with an extension.
    title = extracted.title or (filename if url else PurePosixPath(filename).stem)
    chunks = [
        Chunk(
            app_id=app_id,
            file_id=file_id,
            filename=filename,
            position=n,
            text=piece.text,
            heading=piece.heading,
            page=piece.page if extracted.pages is not None else None,
            title=title,
            version=version,
            url=url or "",
        )
        for n, piece in enumerate(extracted.chunks)
    ]
    return chunks, extracted.pages
