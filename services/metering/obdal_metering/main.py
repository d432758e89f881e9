"""``obdal-metering``: usage, turns and audit into MongoDB, and queries over them."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from obdal_common import subjects
from obdal_common.errors import DependencyUnavailable
from obdal_common.messaging import close as close_nats
from obdal_common.messaging import connect, ensure_topology, serve_requests
from obdal_common.metrics import consumer_gauges
from obdal_common.runner import run_service
from obdal_common.schemas import DependencyStatus, ServiceStatus
from obdal_metering.erasure import Eraser
from obdal_metering.handlers import MeteringHandlers
from obdal_metering.sessions import SessionStore
from obdal_metering.settings import MeteringSettings
from obdal_metering.store import MeteringStore

__all__ = ["main", "serve"]

log = logging.getLogger(__name__)

_MONGO_RETRY_S = 1.0


class _Indexed(Protocol):
    async def ensure_indexes(self) -> None: ...


async def serve(settings: MeteringSettings, stop: asyncio.Event) -> None:
    """Run metering until ``stop`` is set."""
    nc = await connect(settings.nats_url, name="obdal-metering")
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongo_url, tz_aware=True, serverSelectionTimeoutMS=3000
    )
    try:
        js = nc.jetstream()
        await ensure_topology(js)
        store = MeteringStore(mongo, settings.mongo_db)
        sessions = SessionStore(mongo, settings.mongo_db)
        eraser = Eraser(mongo, settings.mongo_db, sessions)
        await _wait_for_mongo(settings, (store, sessions, eraser), stop)
        handlers = MeteringHandlers(nc, js, store, sessions, eraser, settings)

        async def status(_: object) -> ServiceStatus:
            deps = {"nats": DependencyStatus(ok=nc.is_connected)}
            try:
                await store.ping()
                deps["mongo"] = DependencyStatus(ok=True)
            except Exception as exc:
                deps["mongo"] = DependencyStatus(ok=False, detail=type(exc).__name__)
            deps["events"] = DependencyStatus(
                ok=True,
                detail=f"{handlers.stored} stored, {handlers.dead_lettered} dead-lettered, "
                f"{handlers.retention_erased} erased by retention",
            )
            return ServiceStatus(service="metering", ok=all(d.ok for d in deps.values()), dependencies=deps)

        status_sub = await serve_requests(
            nc, subjects.status_subject("metering"), dict, status, span_name="metering.status"
        )
        await handlers.start()
        log.info("metering ready (MongoDB %s)", settings.mongo_db)
        gauges = consumer_gauges(
            js,
            stream=subjects.EVENTS_STREAM,
            consumer=subjects.METERING_CONSUMER,
            subject=subjects.EVENTS_SUBJECTS[0],
            every_s=settings.metrics_sample_s,
        )
        sweeper = asyncio.create_task(handlers.sweep_retention(stop), name="retention")
        async with gauges:
            await handlers.consume(stop)
        await sweeper
        await status_sub.unsubscribe()
        await handlers.stop()
    finally:
        await mongo.close()
        await close_nats(nc)


async def _wait_for_mongo(
    settings: MeteringSettings, parts: tuple[_Indexed, ...], stop: asyncio.Event
) -> None:
    """Create the indexes, waiting (bounded) for a MongoDB that starts after us or is restarting."""
    deadline = time.monotonic() + settings.metering_mongo_wait_s
    while True:
        try:
            for part in parts:
                await part.ensure_indexes()
            return
        except PyMongoError as exc:
            if stop.is_set() or time.monotonic() > deadline:
                raise DependencyUnavailable(
                    f"MongoDB is unreachable at {settings.mongo_url}: {exc}"
                ) from None
            log.warning("waiting for MongoDB: %s", exc)
            await asyncio.sleep(_MONGO_RETRY_S)


def main() -> None:
    """Console entry point."""
    run_service("metering", MeteringSettings, serve)
