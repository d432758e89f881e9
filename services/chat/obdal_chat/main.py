"""``obdal-chat``: the chat worker process."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from obdal_chat.app_settings import AppSettings
from obdal_chat.generation import Generator
from obdal_chat.handlers import ChatHandlers
from obdal_chat.history import SessionHistory
from obdal_chat.partials import PartialAnswers
from obdal_chat.pipeline import AnswerPipeline
from obdal_chat.settings import ChatSettings
from obdal_common import subjects
from obdal_common.messaging import close as close_nats
from obdal_common.messaging import connect, ensure_topology, key_value, serve_requests
from obdal_common.redis_client import redis_client
from obdal_common.retrieval import open_index
from obdal_common.runner import run_service
from obdal_common.schemas import DependencyStatus, ServiceStatus

__all__ = ["main", "serve"]

log = logging.getLogger(__name__)


async def serve(settings: ChatSettings, stop: asyncio.Event) -> None:
    """Run the chat worker until ``stop`` is set."""
    nc = await connect(settings.nats_url, name="obdal-chat")
    redis = redis_client(settings.redis_url)
    try:
        js = nc.jetstream()
        await ensure_topology(js)
        index = await open_index(settings)
        generator = Generator(settings)
        apps = AppSettings(settings, await key_value(js, subjects.KV_APPS))
        await apps.start()
        pipeline = AnswerPipeline(
            settings,
            index=index,
            history=SessionHistory(
                redis, max_messages=settings.chat_history_messages, ttl_s=settings.chat_session_ttl_s
            ),
            apps=apps,
            generator=generator,
            js=js,
            redis=redis,
        )
        handlers = ChatHandlers(
            nc,
            pipeline,
            worker_id=f"{socket.gethostname()}-{os.getpid()}",
            heartbeat_s=settings.chat_heartbeat_s,
            concurrency=settings.chat_concurrency,
        )

        async def status(_: object) -> ServiceStatus:
            deps = {"nats": DependencyStatus(ok=nc.is_connected)}
            deps["index"] = await index.status()
            try:
                await redis.ping()
                deps["redis"] = DependencyStatus(ok=True)
            except Exception as exc:
                deps["redis"] = DependencyStatus(ok=False, detail=str(exc))
            deps["model"] = DependencyStatus(ok=True, detail=settings.chat_model)
            return ServiceStatus(service="chat", ok=all(d.ok for d in deps.values()), dependencies=deps)

        status_sub = await serve_requests(
            nc, subjects.status_subject("chat"), dict, status, span_name="chat.status"
        )
        await handlers.start()
        partials = asyncio.create_task(PartialAnswers(js, pipeline, generator, apps).consume(stop))
        log.info(
            "chat worker ready (model %s, index %s)", settings.chat_model, settings.qdrant_url or "embedded"
        )
        await stop.wait()
        await status_sub.unsubscribe()
        await handlers.stop()
        await partials
        await apps.stop()
        await generator.aclose()
    finally:
        await redis.aclose()
        await close_nats(nc)


def main() -> None:
    """Console entry point."""
    run_service("chat", ChatSettings, serve)
