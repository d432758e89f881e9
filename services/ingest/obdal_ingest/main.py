"""``obdal-ingest``: the ingest worker process."""

from __future__ import annotations

import asyncio
import logging

from obdal_common import subjects
from obdal_common.contract import NatsBus
from obdal_common.health import nats_check
from obdal_common.messaging import close as close_nats
from obdal_common.messaging import connect, ensure_topology, key_value
from obdal_common.metrics import consumer_gauges
from obdal_common.runner import run_service
from obdal_ingest.answers import CuratedAnswerStore
from obdal_ingest.bindings import ingest_bindings
from obdal_ingest.files import FileLifecycle
from obdal_ingest.jobs import JobConsumer
from obdal_ingest.parser_pool import ParserPool
from obdal_ingest.pipeline import IngestPipeline
from obdal_ingest.quotas import IngestQuota
from obdal_ingest.settings import IngestSettings
from obdal_ingest.statuses import FileStatusStore
from obdal_retrieval import HybridIndex, close_index, open_index

__all__ = ["main", "serve"]

log = logging.getLogger(__name__)


async def serve(settings: IngestSettings, stop: asyncio.Event) -> None:
    """Run the ingest worker until ``stop`` is set."""
    nc = await connect(settings.nats_url, name="obdal-ingest")
    index: HybridIndex | None = None
    try:
        js = nc.jetstream()
        await ensure_topology(js)
        index = await open_index(settings)
        files_kv = await key_value(js, subjects.KV_FILES)
        statuses = FileStatusStore(files_kv, js=js)
        objects = await js.object_store(subjects.OBJECT_STORE_FILES)
        parsers = ParserPool(
            timeout_s=settings.parse_timeout_s,
            memory_mb=settings.parse_memory_mb,
        )
        quota = IngestQuota(files_kv, per_hour=settings.app_chunks_per_hour)
        pipeline = IngestPipeline(
            settings, index=index, objects=objects, statuses=statuses, parsers=parsers, quota=quota
        )
        jobs = JobConsumer(js, pipeline, index, settings)
        answers = CuratedAnswerStore(
            await key_value(js, subjects.KV_ANSWERS),
            js=js,
            statuses=statuses,
            embedder=index.embedder,
            max_per_app=settings.max_curated_answers,
        )
        files = FileLifecycle(
            statuses=statuses,
            objects=objects,
            js=js,
            index=index,
            answers=answers,
            connected=lambda: nc.is_connected,
        )
        bindings = ingest_bindings(
            files=files, answers=answers, checks={"nats": nats_check(nc), "index": index.status}
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
        try:
            async with gauges:
                await jobs.consume(stop)
        finally:
            parsers.close()
        await bindings.stop()
    finally:
        await close_nats(nc)
        if index is not None:
            await close_index(index)


def main() -> None:
    """Console entry point."""
    run_service("ingest", IngestSettings, serve)
