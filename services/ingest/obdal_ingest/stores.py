"""Ingest's stores over one NATS connection and one index, wired in one place: for the worker
(``obdal_ingest.main``) and for tests that drive ingest's domain objects directly."""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from obdal_common import subjects
from obdal_common.messaging import ensure_topology, key_value
from obdal_common.outbound import OutboundClient
from obdal_ingest.answers import CuratedAnswerStore
from obdal_ingest.files import FileLifecycle
from obdal_ingest.indexing import IndexWriter
from obdal_ingest.settings import IngestSettings
from obdal_ingest.sources import SourceStore
from obdal_ingest.statuses import FileStatusStore
from obdal_retrieval import HybridIndex
from obdal_retrieval.generations import IndexGenerations

__all__ = ["IngestStores", "open_stores"]


@dataclass(frozen=True, slots=True)
class IngestStores:
    js: JetStreamContext
    objects: ObjectStore
    files_kv: KeyValue
    statuses: FileStatusStore
    answers: CuratedAnswerStore
    files: FileLifecycle
    sources: SourceStore
    # The index as ingest writes it (each change bumps the app's generation).
    index: IndexWriter


async def open_stores(
    nc: NATS, *, index: HybridIndex, client: OutboundClient, settings: IngestSettings
) -> IngestStores:
    """Every store ingest owns, over ``nc`` (streams and buckets declared first); website
    sources fetch through ``client``."""
    js = nc.jetstream()
    await ensure_topology(js, replicas=settings.nats_replicas)
    objects = await js.object_store(subjects.OBJECT_STORE_FILES)
    files_kv = await key_value(js, subjects.KV_FILES)
    statuses = FileStatusStore(files_kv, js=js)
    answers = CuratedAnswerStore(
        await key_value(js, subjects.KV_ANSWERS),
        js=js,
        statuses=statuses,
        embedder=index.embedder,
        max_per_app=settings.max_curated_answers,
    )
    writer = IndexWriter(
        index, generations=IndexGenerations(await key_value(js, subjects.KV_INDEX_GENERATIONS))
    )
    files = FileLifecycle(
        statuses=statuses,
        objects=objects,
        js=js,
        index=writer,
        answers=answers,
        connected=lambda: nc.is_connected,
    )
    sources = SourceStore(
        await key_value(js, subjects.KV_SOURCES),
        await key_value(js, subjects.KV_SOURCE_PAGES),
        js=js,
        files=files,
        client=client,
        settings=settings,
    )
    return IngestStores(js, objects, files_kv, statuses, answers, files, sources, writer)
