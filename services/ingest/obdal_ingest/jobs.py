"""The ingest worker's job consumer: each queued version of a file parsed, indexed and
recorded ``ready`` or ``failed`` (the RPCs of the file lifecycle are :mod:`obdal_ingest.bindings`')."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from opentelemetry import trace

from obdal_common import subjects
from obdal_common.errors import ObdalError
from obdal_common.messaging import decode_or_term, pull_each
from obdal_common.schemas import IngestJob
from obdal_common.telemetry import extract_context
from obdal_ingest.pipeline import IngestPipeline
from obdal_ingest.settings import IngestSettings
from obdal_retrieval import HybridIndex

__all__ = ["JobConsumer"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

_PROGRESS_S = 10.0


class JobConsumer:
    def __init__(
        self,
        js: JetStreamContext,
        pipeline: IngestPipeline,
        index: HybridIndex,
        settings: IngestSettings,
    ) -> None:
        self._js = js
        self._pipeline = pipeline
        self._index = index
        self._settings = settings

    async def consume(self, stop: asyncio.Event) -> None:
        """Pull jobs one at a time until ``stop``; each is acked only once its outcome is recorded."""
        s = self._settings
        sub = await self._js.pull_subscribe(
            subjects.INGEST_JOB,
            durable=subjects.INGEST_CONSUMER,
            stream=subjects.INGEST_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                max_deliver=s.ingest_max_deliver,
                ack_wait=s.ingest_ack_wait_s,
            ),
        )
        await pull_each(sub, self._handle, stop=stop, batch=1, what="ingest job")

    async def _handle(self, msg: Msg) -> None:
        job = await decode_or_term(msg, IngestJob, what="ingest job")
        if job is None:
            return
        attempt = msg.metadata.num_delivered
        pipeline = self._pipeline
        if attempt >= self._settings.ingest_max_deliver > 1 and await self._died_on(job):
            # The last delivery of a job whose previous attempt killed its worker (no outcome was
            # recorded): trying again would most likely kill this one too, and then nobody would
            # ever mark the file failed. Give up now, so the file ends `failed` and the queue moves on.
            log.error("giving up on %s: the ingest worker died while processing it", job.file_id)
            await self._index.delete_file(job.app_id, job.file_id)  # what the dead attempts indexed
            await self._give_up(
                job, msg, f"the ingest worker stopped while processing this file ({attempt - 1} attempts)"
            )
            return
        with tracer.start_as_current_span("ingest.job", context=extract_context(msg.headers)):
            progress = asyncio.create_task(self._keep_alive(msg))
            try:
                chunks = await self._pipeline.run(job)
            except ObdalError as exc:  # ParseError included
                # The content itself is bad: retrying cannot help.
                await pipeline.report(job, "failed", error=str(exc), finished_at=datetime.now(UTC))
                await msg.ack_sync()
                return
            except Exception as exc:
                log.exception("ingest of %s failed (attempt %d)", job.file_id, attempt)
                # Recorded, so the next attempt knows this one did not die with its worker.
                await pipeline.report(job, "processing", error=f"attempt {attempt} failed: {exc}")
                if attempt >= self._settings.ingest_max_deliver:
                    await self._give_up(job, msg, f"gave up after {attempt} attempts: {exc}")
                else:
                    await msg.nak(delay=min(30.0, 2.0**attempt))
                return
            finally:
                progress.cancel()
            log.info("indexed %s (%d chunks)", job.file_id, chunks)
            await msg.ack_sync()

    async def _give_up(self, job: IngestJob, msg: Msg, error: str) -> None:
        """The file ends ``failed`` with ``error``; the job is never delivered again."""
        await self._pipeline.report(job, "failed", error=error, finished_at=datetime.now(UTC))
        await msg.term()

    async def _died_on(self, job: IngestJob) -> bool:
        """Whether an earlier attempt at ``job`` started and then vanished without an outcome."""
        status = await self._pipeline.statuses.get(job.app_id, job.file_id)
        return (
            status is not None
            and status.version == job.version
            and status.status == "processing"
            and status.error is None
        )

    async def _keep_alive(self, msg: Msg) -> None:
        # Long files: tell JetStream we are still working so it does not redeliver (well within ack_wait).
        while True:
            await asyncio.sleep(min(_PROGRESS_S, self._settings.ingest_ack_wait_s / 3))
            await msg.in_progress()
