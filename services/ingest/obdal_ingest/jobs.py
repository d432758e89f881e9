"""The ingest worker's job consumer: each queued version of a file parsed, indexed and
recorded ``ready`` or ``failed`` (the RPCs of the file lifecycle are :mod:`obdal_ingest.bindings`').

Jobs are taken in turns by app, not in arrival order. One stream holds every app's jobs, and
taking them first come, first served let one app's backlog hold every other app's first file
behind it: an 11.7 KB file of one app delayed another app's tiny file by minutes (issue 15,
finding 7). So the worker holds a window of up to ``_WINDOW`` pending jobs (metadata only, a
few hundred bytes each), keeps them from being redelivered with ``in_progress``, and runs them
round-robin by app, first come first served within an app; the window is topped up before each
job (``_FETCH_BATCH`` at a time, so replicas share a burst), so a new app's first file runs once
the job in progress ends. Each job is still acked only
once its outcome is recorded, so a worker that dies leaves its window to be redelivered.
Measured (tests/test_ingest_limits.py, 20 queued files of one app, then one of another):
taken in arrival order, 19 of the 20 finished before the other app's file; in turns, 1 of the
19 that had not started when it was uploaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from opentelemetry import trace

from obdal_common import subjects
from obdal_common.errors import ObdalError
from obdal_common.messaging import decode_or_term
from obdal_common.schemas import IngestJob
from obdal_common.telemetry import extract_context
from obdal_ingest.indexing import IndexWriter
from obdal_ingest.pipeline import IngestPipeline
from obdal_ingest.settings import IngestSettings

__all__ = ["FairWindow", "JobConsumer"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

_PROGRESS_S = 10.0
# Jobs held at once: more apps than this with work queued at the same moment take turns by
# arrival beyond it. Well under JetStream's default max_ack_pending (1,000).
_WINDOW = 100
# Taken per fetch: small, so replicas topping up in turn split a burst of uploads between them
# instead of the first to fetch holding it all while the others idle.
_FETCH_BATCH = 16
_IDLE_WAIT_S = 1.0  # a fetch's wait with nothing held
_TOP_UP_WAIT_S = 0.05  # with jobs held: just what has arrived meanwhile


class FairWindow:
    """Held jobs, handed out round-robin by app (first in, first out within an app): the app
    served longest ago goes next, and an app with nothing served yet before any other.

    A job on its last delivery goes first: held through one more worker restart, JetStream
    would deliver it no more and its file would stay ``queued``.
    """

    def __init__(self, *, max_deliver: int) -> None:
        self._max_deliver = max_deliver
        self._apps: dict[str, deque[tuple[IngestJob, Msg]]] = {}  # each app's jobs, in arrival order
        self._served: dict[str, int] = {}  # the turn each held app was last served at
        self._turn = 0

    def __len__(self) -> int:
        return sum(len(jobs) for jobs in self._apps.values())

    def add(self, job: IngestJob, msg: Msg) -> None:
        self._apps.setdefault(job.app_id, deque()).append((job, msg))

    def take(self) -> tuple[IngestJob, Msg] | None:
        """The next job, or ``None`` if none is held."""
        last = [app for app, jobs in self._apps.items() if any(self._last_delivery(m) for _, m in jobs)]
        if last:
            jobs = self._apps[last[0]]
            held = next(h for h in jobs if self._last_delivery(h[1]))
            jobs.remove(held)
            return self._served_from(last[0], held)
        if not self._apps:
            return None
        app_id = min(self._apps, key=lambda app: self._served.get(app, -1))  # ties: by arrival
        return self._served_from(app_id, self._apps[app_id].popleft())

    def messages(self) -> list[Msg]:
        return [msg for jobs in self._apps.values() for _, msg in jobs]

    def _last_delivery(self, msg: Msg) -> bool:
        return msg.metadata.num_delivered >= self._max_deliver

    def _served_from(self, app_id: str, held: tuple[IngestJob, Msg]) -> tuple[IngestJob, Msg]:
        self._turn += 1
        self._served[app_id] = self._turn
        if not self._apps[app_id]:
            # Forgotten with its last held job, so memory is bounded by the window.
            del self._apps[app_id], self._served[app_id]
        return held


class JobConsumer:
    def __init__(
        self,
        js: JetStreamContext,
        pipeline: IngestPipeline,
        index: IndexWriter,
        settings: IngestSettings,
    ) -> None:
        self._js = js
        self._pipeline = pipeline
        self._index = index
        self._settings = settings

    async def consume(self, stop: asyncio.Event) -> None:
        """Run jobs, in turns by app, until ``stop``; each is acked only once its outcome is recorded."""
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
        window = FairWindow(max_deliver=s.ingest_max_deliver)
        running: list[Msg] = []
        keeper = asyncio.create_task(self._keep_alive(lambda: [*running, *window.messages()]))
        try:
            while not stop.is_set():
                await self._top_up(sub, window)
                taken = window.take()
                if taken is None:
                    continue
                running[:] = [taken[1]]
                try:
                    await self._handle(*taken)
                except Exception as exc:  # typically NATS lost before the ack
                    log.warning("ingest job interrupted, it will be redelivered: %r", exc)
                running.clear()
        finally:
            keeper.cancel()
            # Held, never started: redelivered at once (to another worker) rather than after ack_wait.
            for msg in window.messages():
                with contextlib.suppress(Exception):
                    await msg.nak()
            await sub.unsubscribe()

    async def _top_up(self, sub: JetStreamContext.PullSubscription, window: FairWindow) -> None:
        """Add what is pending to the window, waiting a second only when it holds nothing."""
        room = min(_WINDOW - len(window), _FETCH_BATCH)
        if room <= 0:
            return
        try:
            msgs = await sub.fetch(room, timeout=_TOP_UP_WAIT_S if len(window) else _IDLE_WAIT_S)
        except (TimeoutError, nats.errors.TimeoutError):
            return
        except Exception as exc:  # NATS reconnecting: wait and retry
            log.warning("ingest job fetch failed: %s", exc)
            await asyncio.sleep(1.0)
            return
        for msg in msgs:
            job = await decode_or_term(msg, IngestJob, what="ingest job")
            if job is not None:
                window.add(job, msg)

    async def _handle(self, job: IngestJob, msg: Msg) -> None:
        attempt = msg.metadata.num_delivered
        pipeline = self._pipeline
        if attempt >= self._settings.ingest_max_deliver > 1 and await self._died_on(job):
            # The last delivery of a job whose previous attempt killed its worker (no outcome was
            # recorded): trying again would most likely kill this one too, and then nobody would
            # ever mark the file failed. Give up now, so the file ends `failed` and the queue moves on.
            log.error("giving up on %s: the ingest worker died while processing it", job.file_id)
            await self._index.delete_file(job.app_id, job.file_id)  # what the dead attempts indexed
            await self._give_up(
                job,
                msg,
                f"the ingest worker stopped while processing this file ({attempt - 1} attempts)",
                code="worker_died",
            )
            return
        with tracer.start_as_current_span("ingest.job", context=extract_context(msg.headers)):
            try:
                chunks = await self._pipeline.run(job)
            except ObdalError as exc:  # ParseError, the per-file caps and the app's quota included
                # The content itself is bad, or over a limit: retrying cannot help.
                await pipeline.report(
                    job, "failed", error=str(exc), error_code=exc.code, finished_at=datetime.now(UTC)
                )
                await msg.ack_sync()
                return
            except Exception as exc:
                log.exception("ingest of %s failed (attempt %d)", job.file_id, attempt)
                # Recorded, so the next attempt knows this one did not die with its worker.
                await pipeline.report(job, "processing", error=f"attempt {attempt} failed: {exc}")
                if attempt >= self._settings.ingest_max_deliver:
                    await self._give_up(job, msg, f"gave up after {attempt} attempts: {exc}", code="gave_up")
                else:
                    await msg.nak(delay=min(30.0, 2.0**attempt))
                return
            log.info("indexed %s (%d chunks)", job.file_id, chunks)
            await msg.ack_sync()

    async def _give_up(self, job: IngestJob, msg: Msg, error: str, *, code: str) -> None:
        """The file ends ``failed`` with ``error``; the job is never delivered again."""
        await self._pipeline.report(
            job, "failed", error=error, error_code=code, finished_at=datetime.now(UTC)
        )
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

    async def _keep_alive(self, held: Callable[[], list[Msg]]) -> None:
        # Long files, and jobs waiting their turn: tell JetStream we still have them, so it does
        # not redeliver them (well within ack_wait).
        while True:
            await asyncio.sleep(min(_PROGRESS_S, self._settings.ingest_ack_wait_s / 3))
            for msg in held():
                with contextlib.suppress(nats.errors.Error):  # NATS lost: redelivered later anyway
                    await msg.in_progress()
