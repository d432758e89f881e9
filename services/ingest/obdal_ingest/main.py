"""``obdal-ingest``: the ingest worker process."""

from __future__ import annotations

import asyncio
import logging

from obdal_common import subjects
from obdal_common.files import FileStatusStore
from obdal_common.messaging import close as close_nats
from obdal_common.messaging import connect, ensure_topology, key_value, serve_requests
from obdal_common.metrics import consumer_gauges
from obdal_common.retrieval import open_index
from obdal_common.runner import run_service
from obdal_common.schemas import DependencyStatus, ServiceStatus
from obdal_ingest.handlers import IngestHandlers
from obdal_ingest.parser_pool import ParserPool
from obdal_ingest.pipeline import IngestPipeline
from obdal_ingest.settings import IngestSettings

__all__ = ["main", "serve"]

log = logging.getLogger(__name__)


async def serve(settings: IngestSettings, stop: asyncio.Event) -> None:
    """Run the ingest worker until ``stop`` is set."""
    nc = await connect(settings.nats_url, name="obdal-ingest")
    try:
        js = nc.jetstream()
        await ensure_topology(js)
        index = await open_index(settings)
        statuses = FileStatusStore(await key_value(js, subjects.KV_FILES))
        objects = await js.object_store(subjects.OBJECT_STORE_FILES)
        parsers = ParserPool(
            timeout_s=settings.parse_timeout_s,
            memory_mb=settings.parse_memory_mb,
        )
        pipeline = IngestPipeline(settings, index=index, objects=objects, statuses=statuses, parsers=parsers)
        handlers = IngestHandlers(nc, js, pipeline, index, settings)

        async def status(_: object) -> ServiceStatus:
            deps = {"nats": DependencyStatus(ok=nc.is_connected)}
            deps["index"] = await index.status()
            return ServiceStatus(service="ingest", ok=all(d.ok for d in deps.values()), dependencies=deps)

        status_sub = await serve_requests(
            nc, subjects.status_subject("ingest"), dict, status, span_name="ingest.status"
        )
        await handlers.start()
        log.info("ingest worker ready")
        gauges = consumer_gauges(
            js,
            stream=subjects.INGEST_STREAM,
            consumer=subjects.INGEST_CONSUMER,
            subject=subjects.INGEST_JOB,
            every_s=settings.metrics_sample_s,
        )
        try:
            async with gauges:
                await handlers.consume(stop)
        finally:
            parsers.close()
        await status_sub.unsubscribe()
        await handlers.stop()
    finally:
        await close_nats(nc)


def main() -> None:
    """Console entry point."""
    run_service("ingest", IngestSettings, serve)
