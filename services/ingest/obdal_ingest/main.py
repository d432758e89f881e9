"""``obdal-ingest``: the ingest worker process."""

from __future__ import annotations

import asyncio
import logging

from obdal_common import subjects
from obdal_common.contract import NatsBus
from obdal_common.health import nats_check
from obdal_common.ids import new_id
from obdal_common.messaging import close as close_nats
from obdal_common.messaging import connect
from obdal_common.metrics import consumer_gauges
from obdal_common.outbound import OutboundClient, OutboundPolicy, resolver_from_setting
from obdal_common.runner import run_service
from obdal_ingest.bindings import ingest_bindings
from obdal_ingest.crawler import USER_AGENT, Crawler
from obdal_ingest.jobs import JobConsumer
from obdal_ingest.parser_pool import ParserPool
from obdal_ingest.pipeline import IngestPipeline
from obdal_ingest.quotas import IngestQuota
from obdal_ingest.schedule import SourceScheduler
from obdal_ingest.settings import IngestSettings
from obdal_ingest.stores import open_stores
from obdal_ingest.syncs import SourceSync
from obdal_retrieval import HybridIndex, close_index, open_index

__all__ = ["main", "serve"]

log = logging.getLogger(__name__)


async def serve(settings: IngestSettings, stop: asyncio.Event) -> None:
    """Run the ingest worker until ``stop`` is set."""
    nc = await connect(settings.nats_url, name="obdal-ingest")
    index: HybridIndex | None = None
    try:
        index = await open_index(settings)
        outbound = OutboundClient(
            OutboundPolicy.from_setting(settings.outbound_allow, timeout_s=settings.crawl_timeout_s),
            user_agent=USER_AGENT,
            resolver=resolver_from_setting(settings.outbound_nameserver),
        )
        stores = await open_stores(nc, index=index, client=outbound, settings=settings)
        js, objects, statuses, files = stores.js, stores.objects, stores.statuses, stores.files
        sources = stores.sources
        parsers = ParserPool(
            timeout_s=settings.parse_timeout_s,
            memory_mb=settings.parse_memory_mb,
        )
        quota = IngestQuota(stores.files_kv, per_hour=settings.app_chunks_per_hour)
        pipeline = IngestPipeline(
            settings,
            index=stores.index,
            objects=objects,
            statuses=statuses,
            parsers=parsers,
            quota=quota,
            js=js,
        )
        jobs = JobConsumer(js, pipeline, stores.index, settings)
        # Crawled pages are extracted in a parser child of their own: a page that times it out
        # must not take an uploaded file's parse down with it.
        page_parsers = ParserPool(timeout_s=settings.parse_timeout_s, memory_mb=settings.parse_memory_mb)
        worker_id = new_id("ingest")
        sync = SourceSync(
            sources,
            crawler=Crawler(
                outbound,
                page_parsers,
                user_agent=USER_AGENT,
                per_host_concurrency=settings.crawl_host_concurrency,
                delay_s=settings.crawl_delay_s,
                max_chars=settings.max_file_chars,
            ),
            files=files,
            objects=objects,
            settings=settings,
            worker_id=worker_id,
        )
        scheduler = SourceScheduler(
            sources,
            sync,
            worker_id=worker_id,
            tick_s=settings.source_tick_s,
            lease_s=settings.source_lease_s,
            concurrency=settings.crawl_concurrency,
        )
        bindings = ingest_bindings(
            files=files,
            answers=stores.answers,
            sources=sources,
            checks={"nats": nats_check(nc), "index": index.status},
        )
        await bindings.serve(NatsBus(nc))
        log.info("ingest worker ready")
        gauges = consumer_gauges(
            js,
            stream=subjects.INGEST_STREAM,
            consumer=subjects.INGEST_CONSUMER,
            subject=subjects.INGEST_JOB,
            every_s=settings.metrics_sample_s,
        )
        schedule = asyncio.create_task(scheduler.run(stop), name="website syncs")
        try:
            async with gauges:
                await jobs.consume(stop)
        finally:
            stop.set()
            await schedule
            await outbound.aclose()
            page_parsers.close()
            parsers.close()
        await bindings.stop()
    finally:
        await close_nats(nc)
        if index is not None:
            await close_index(index)


def main() -> None:
    """Console entry point."""
    run_service("ingest", IngestSettings, serve)
