"""``obdal-chat``: the chat worker process."""

from __future__ import annotations

import asyncio
import logging

from obdal_chat.answers import AnswerServer
from obdal_chat.app_settings import AppSettings
from obdal_chat.bindings import chat_bindings
from obdal_chat.curated import CuratedAnswers
from obdal_chat.generation import Generator
from obdal_chat.handoffs import OpenHandoffs
from obdal_chat.history import SessionHistory
from obdal_chat.partials import PartialAnswers
from obdal_chat.pipeline import AnswerPipeline
from obdal_chat.query_cache import QueryCache
from obdal_chat.settings import ChatSettings
from obdal_common import subjects
from obdal_common.contract import NatsBus
from obdal_common.health import nats_check, ping_check
from obdal_common.messaging import close as close_nats
from obdal_common.messaging import connect, ensure_topology, key_value
from obdal_common.redis_client import redis_client
from obdal_common.runner import run_service
from obdal_common.schemas import DependencyStatus
from obdal_retrieval import HybridIndex, close_index, open_index
from obdal_retrieval.generations import IndexGenerations

__all__ = ["main", "serve"]

log = logging.getLogger(__name__)


async def serve(settings: ChatSettings, stop: asyncio.Event) -> None:
    """Run the chat worker until ``stop`` is set."""
    nc = await connect(settings.nats_url, name="obdal-chat")
    redis = redis_client(settings.redis_url)
    index: HybridIndex | None = None
    try:
        js = nc.jetstream()
        await ensure_topology(js, replicas=settings.nats_replicas)
        index = await open_index(settings)
        generator = Generator(settings)
        apps = AppSettings(settings, await key_value(js, subjects.KV_APPS))
        await apps.start()
        curated = CuratedAnswers(await key_value(js, subjects.KV_ANSWERS), embedder=index.embedder.model_id)
        await curated.start()
        handoffs = OpenHandoffs(await key_value(js, subjects.KV_HANDOFFS))
        await handoffs.start()
        history = SessionHistory(
            redis, max_messages=settings.chat_history_messages, ttl_s=settings.chat_session_ttl_s
        )
        cache = QueryCache(
            index,
            generations=IndexGenerations(await key_value(js, subjects.KV_INDEX_GENERATIONS)),
            max_bytes=int(settings.chat_query_cache_mb * 2**20),
        )
        pipeline = AnswerPipeline(
            settings,
            index=index,
            cache=cache,
            history=history,
            apps=apps,
            curated=curated,
            handoffs=handoffs,
            generator=generator,
            js=js,
            redis=redis,
        )
        answers = AnswerServer(
            nc,
            pipeline,
            heartbeat_s=settings.chat_heartbeat_s,
            concurrency=settings.chat_concurrency,
        )

        async def model_check() -> DependencyStatus:
            return DependencyStatus(ok=True, detail=settings.chat_model)

        checks = {
            "nats": nats_check(nc),
            "index": index.status,
            "redis": ping_check(redis.ping),
            "model": model_check,
            "query_cache": cache.status,
        }
        bindings = chat_bindings(history=history, checks=checks)
        await bindings.serve(NatsBus(nc))
        await answers.start()
        partial_answers = PartialAnswers(
            js,
            pipeline,
            generator,
            apps,
            max_deliver=settings.chat_partial_max_deliver,
            ack_wait_s=settings.chat_partial_ack_wait_s,
        )
        partials = asyncio.create_task(partial_answers.consume(stop))
        log.info(
            "chat worker ready (model %s, index %s)", settings.chat_model, settings.qdrant_url or "embedded"
        )
        await stop.wait()
        await bindings.stop()
        await answers.stop()
        await partials
        await handoffs.stop()
        await curated.stop()
        await apps.stop()
        await generator.aclose()
    finally:
        await redis.aclose()
        await close_nats(nc)
        if index is not None:
            await close_index(index)


def main() -> None:
    """Console entry point."""
    run_service("chat", ChatSettings, serve)
