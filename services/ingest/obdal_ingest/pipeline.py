"""One ingest job: read the bytes, parse, chunk, embed and index, report status."""

from __future__ import annotations

import logging

from nats.js.object_store import ObjectStore
from opentelemetry import trace

from obdal_common.files import FileStatusStore
from obdal_common.retrieval import Chunk, HybridIndex
from obdal_common.schemas import IngestJob
from obdal_ingest.chunking import chunk_text
from obdal_ingest.parsing import parse
from obdal_ingest.settings import IngestSettings

__all__ = ["IngestPipeline"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


class IngestPipeline:
    def __init__(
        self, settings: IngestSettings, *, index: HybridIndex, objects: ObjectStore, statuses: FileStatusStore
    ) -> None:
        self._settings = settings
        self._index = index
        self._objects = objects
        self.statuses = statuses

    async def run(self, job: IngestJob) -> int:
        """Index the job's file; returns the chunk count. Raises ParseError for unreadable files."""
        span = trace.get_current_span()
        span.set_attribute("obdal.app_id", job.app_id)
        span.set_attribute("obdal.file_id", job.file_id)
        if await self.statuses.update(job.app_id, job.file_id, "processing") is None:
            log.info("file %s was deleted before ingestion; skipping", job.file_id)
            return 0
        result = await self._objects.get(job.object_name)
        with tracer.start_as_current_span("ingest.parse"):
            text = parse(result.data or b"", content_type=job.content_type)
        pieces = chunk_text(
            text,
            target_tokens=self._settings.chunk_tokens,
            overlap_tokens=self._settings.chunk_overlap_tokens,
        )
        chunks = [
            Chunk(
                app_id=job.app_id,
                file_id=job.file_id,
                filename=job.filename,
                position=n,
                text=piece.text,
                heading=piece.heading,
            )
            for n, piece in enumerate(pieces)
        ]
        with tracer.start_as_current_span("ingest.index") as ispan:
            # Re-delivery overwrites: chunk point ids are deterministic per file and position.
            await self._index.add(chunks)
            ispan.set_attribute("obdal.chunks", len(chunks))
        if await self.statuses.update(job.app_id, job.file_id, "ready", chunks=len(chunks)) is None:
            # Deleted while we indexed it: remove what we just wrote.
            await self._index.delete_file(job.app_id, job.file_id)
        return len(chunks)
