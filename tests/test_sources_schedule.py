"""Website syncs across ingest replicas: two workers' schedulers on one NATS claim a due source
exactly once, a claim whose worker died is taken over when its lease runs out (and not before),
and a schedule is kept in the record, so it survives the workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client as NATS

from obdal.servers import nats_server
from obdal_common.messaging import close, connect
from obdal_common.outbound import OutboundClient, OutboundPolicy
from obdal_common.schemas import SourceCreate, SourceLookup, WebsiteSource
from obdal_ingest.crawler import USER_AGENT, Crawler
from obdal_ingest.parser_pool import ParserPool
from obdal_ingest.schedule import SourceScheduler, is_due
from obdal_ingest.settings import IngestSettings
from obdal_ingest.sources import SourceStore, next_sync
from obdal_ingest.syncs import SourceSync
from obdal_retrieval import close_indexes
from tests.ingest_parts import ingest_parts
from tests.website import TOPICS, Website

LEASE_S = 5.0


@dataclass
class Replicas:
    store: SourceStore
    schedulers: list[SourceScheduler]
    site: Website


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[Replicas]:
    server = nats_server(tmp_path).start()
    nc: NATS = await connect(server.url, name="schedule-test")
    parsers = ParserPool(timeout_s=30, memory_mb=2048)
    client = OutboundClient(OutboundPolicy.from_setting("127.0.0.0/8"), user_agent=USER_AGENT)
    try:
        settings = IngestSettings(source_lease_s=LEASE_S)
        parts, _ = await ingest_parts(nc, tmp_path, client=client, settings=settings)
        store, files, objects = parts.sources, parts.files, parts.objects
        crawler = Crawler(client, parsers, user_agent=USER_AGENT, delay_s=0)
        schedulers = []
        for worker in ("ingest_a", "ingest_b"):
            sync = SourceSync(
                store, crawler=crawler, files=files, objects=objects, settings=settings, worker_id=worker
            )
            schedulers.append(
                SourceScheduler(store, sync, worker_id=worker, tick_s=0.1, lease_s=LEASE_S, concurrency=1)
            )
        with Website(articles_per_topic=1) as site:
            yield Replicas(store=store, schedulers=schedulers, site=site)
    finally:
        await client.aclose()
        parsers.close()
        await close_indexes()
        await close(nc)
        server.stop()


async def _settled(store: SourceStore, source: WebsiteSource) -> WebsiteSource:
    for _ in range(300):
        now = await store.get(SourceLookup(app_id=source.app_id, source_id=source.source_id))
        if now.status in ("ready", "failed"):
            return now
        await asyncio.sleep(0.1)
    raise AssertionError(f"source {source.source_id} never finished syncing")


async def _page_source(replicas: Replicas, app_id: str) -> WebsiteSource:
    return await replicas.store.create(
        SourceCreate(app_id=app_id, url=f"{replicas.site.url}/{TOPICS[0]}/article-1", mode="page")
    )


async def test_of_two_replicas_exactly_one_claims_a_due_source(replicas: Replicas) -> None:
    source = await _page_source(replicas, "app_twoReplicas")
    a, b = replicas.schedulers
    started = await asyncio.gather(a.tick(), b.tick())
    assert sorted(started) == [0, 1]
    synced = await _settled(replicas.store, source)
    assert synced.status == "ready", synced
    assert synced.last_sync is not None
    assert synced.last_sync.indexed == 1
    assert synced.lease_owner == ""
    assert synced.lease_until is None
    assert synced.pages == 1
    # Requested once, fetched once: the other replica never touched it.
    fetched = [p for _, p, _ in replicas.site.requests if p == f"/{TOPICS[0]}/article-1"]
    assert fetched == [f"/{TOPICS[0]}/article-1"]
    # Ready and not scheduled again: neither replica claims it.
    assert await asyncio.gather(a.tick(), b.tick()) == [0, 0]


async def test_a_claim_whose_worker_died_is_taken_over_once_its_lease_runs_out(replicas: Replicas) -> None:
    source = await _page_source(replicas, "app_deadWorker")
    store = replicas.store
    current, revision = await store.entry(source.app_id, source.source_id)
    now = store.now()
    held = msgspec.structs.replace(
        current, status="syncing", lease_owner="ingest_dead", lease_until=now + timedelta(seconds=30)
    )
    revision = await store.swap(held, revision) or 0
    assert revision
    a, _ = replicas.schedulers
    assert await a.tick() == 0  # its lease still runs: the worker may be alive and busy
    expired = msgspec.structs.replace(held, lease_until=now - timedelta(seconds=1))
    assert await store.swap(expired, revision)
    assert await a.tick() == 1
    synced = await _settled(store, source)
    assert synced.status == "ready"
    assert synced.pages == 1


async def test_the_schedule_is_in_the_record(replicas: Replicas) -> None:
    created = await replicas.store.create(
        SourceCreate(
            app_id="app_scheduled",
            url=f"{replicas.site.url}/{TOPICS[1]}/article-1",
            mode="page",
            resync="daily",
        )
    )
    a, _ = replicas.schedulers
    assert await a.tick() == 1
    synced = await _settled(replicas.store, created)
    assert synced.next_sync_at is not None
    assert synced.last_sync_at is not None
    assert synced.next_sync_at - synced.last_sync_at == timedelta(days=1)
    assert not is_due(synced, now=synced.next_sync_at - timedelta(seconds=1))
    assert is_due(synced, now=synced.next_sync_at)
    at = datetime(2026, 12, 2, 10, 30, tzinfo=UTC)
    assert next_sync("0 3 * * 1", after=at) == datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    assert next_sync("weekly", after=at) == at + timedelta(days=7)
    assert next_sync("off", after=at) is None
