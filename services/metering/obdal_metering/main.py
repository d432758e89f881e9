"""``obdal-metering``: usage, turns and audit into MongoDB, and queries over them."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from obdal_common import subjects
from obdal_common.contract import NatsBus
from obdal_common.health import nats_check, ping_check
from obdal_common.messaging import close as close_nats
from obdal_common.messaging import connect, ensure_topology, key_value
from obdal_common.metrics import consumer_gauges
from obdal_common.runner import run_service, wait_for_dependency
from obdal_common.schemas import DependencyStatus
from obdal_metering.bindings import metering_bindings
from obdal_metering.erasure import Eraser
from obdal_metering.events import EventConsumer
from obdal_metering.feedback import FeedbackStore
from obdal_metering.grouping import Groups
from obdal_metering.handoffs import Handoffs
from obdal_metering.reports import Reports
from obdal_metering.rollups import Rollups
from obdal_metering.sealing import SessionKeys
from obdal_metering.sessions import SessionStore
from obdal_metering.settings import MeteringSettings
from obdal_metering.store import MeteringStore

__all__ = ["main", "serve"]

log = logging.getLogger(__name__)


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
        await ensure_topology(js, replicas=settings.nats_replicas)
        keys = SessionKeys(js)
        store = MeteringStore(mongo, settings.mongo_db)
        sessions = SessionStore(mongo, settings.mongo_db, keys=keys)
        rollups = Rollups(mongo, settings.mongo_db, refresh_s=settings.analytics_refresh_s)
        groups = Groups(mongo, settings.mongo_db, keys=keys)
        feedback = FeedbackStore(mongo, settings.mongo_db, keys=keys, rollups=rollups)
        open_handoffs = await key_value(js, subjects.KV_HANDOFFS)
        eraser = Eraser(
            mongo,
            settings.mongo_db,
            sessions,
            keys=keys,
            groups=groups,
            rollups=rollups,
            handoffs=open_handoffs,
        )
        handoffs = Handoffs(
            mongo, settings.mongo_db, nc=nc, kv=open_handoffs, keys=keys, sessions=sessions, rollups=rollups
        )
        reports = Reports(mongo, settings.mongo_db, keys=keys, groups=groups, rollups=rollups)
        parts: tuple[_Indexed, ...] = (store, sessions, feedback, eraser, rollups, groups, handoffs)

        async def ensure_indexes() -> None:
            for part in parts:
                await part.ensure_indexes()

        await wait_for_dependency(
            ensure_indexes,
            what=f"MongoDB at {settings.mongo_url}",
            errors=(PyMongoError,),
            within_s=settings.metering_mongo_wait_s,
            stop=stop,
        )
        events = EventConsumer(
            js, store, sessions, eraser, settings, keys=keys, groups=groups, rollups=rollups
        )

        async def events_check() -> DependencyStatus:
            detail = (
                f"{events.stored} stored, {events.dead_lettered} dead-lettered, "
                f"{eraser.retention_erased} erased by retention"
            )
            return DependencyStatus(ok=True, detail=detail)

        checks = {"nats": nats_check(nc), "mongo": ping_check(store.ping), "events": events_check}
        bindings = metering_bindings(
            store=store,
            sessions=sessions,
            feedback=feedback,
            handoffs=handoffs,
            eraser=eraser,
            reports=reports,
            checks=checks,
        )
        await bindings.serve(NatsBus(nc))
        log.info("metering ready (MongoDB %s)", settings.mongo_db)
        gauges = consumer_gauges(
            js,
            stream=subjects.EVENTS_STREAM,
            consumer=subjects.METERING_CONSUMER,
            subject=subjects.EVENTS_SUBJECTS[0],
            every_s=settings.metrics_sample_s,
        )
        sweeper = asyncio.create_task(
            eraser.sweep_until(stop, every_s=settings.metering_retention_sweep_s), name="retention"
        )
        refresher = asyncio.create_task(rollups.refresh_until(stop), name="analytics")
        async with gauges:
            await events.consume(stop)
        await sweeper
        await refresher
        await bindings.stop()
    finally:
        await mongo.close()
        await close_nats(nc)


def main() -> None:
    """Console entry point."""
    run_service("metering", MeteringSettings, serve)
