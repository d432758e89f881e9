"""Ingest's stores wired as ``obdal_ingest.main`` wires them, on a NATS of a test's own and an
in-memory index: for tests that drive ingest's domain objects directly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.object_store import ObjectStore

from obdal_common import subjects
from obdal_common.messaging import ensure_topology, key_value
from obdal_common.outbound import OutboundClient
from obdal_common.settings import ObdalSettings
from obdal_ingest.answers import CuratedAnswerStore
from obdal_ingest.files import FileLifecycle
from obdal_ingest.settings import IngestSettings
from obdal_ingest.sources import SourceStore
from obdal_ingest.statuses import FileStatusStore
from obdal_retrieval import HybridIndex, open_index

__all__ = ["IngestParts", "ingest_parts"]


@dataclass(frozen=True)
class IngestParts:
    js: JetStreamContext
    objects: ObjectStore
    statuses: FileStatusStore
    index: HybridIndex
    answers: CuratedAnswerStore
    files: FileLifecycle
    sources: SourceStore


async def ingest_parts(
    nc: NATS, data_dir: Path, *, client: OutboundClient, settings: IngestSettings
) -> IngestParts:
    """Every store over ``nc`` (the caller closes the index with ``close_indexes``)."""
    js = nc.jetstream()
    await ensure_topology(js)
    objects = await js.object_store(subjects.OBJECT_STORE_FILES)
    statuses = FileStatusStore(await key_value(js, subjects.KV_FILES), js=js)
    index = await open_index(ObdalSettings(data_dir=data_dir, qdrant_url=":memory:"))
    answers = CuratedAnswerStore(
        await key_value(js, subjects.KV_ANSWERS),
        js=js,
        statuses=statuses,
        embedder=index.embedder,
        max_per_app=10,
    )
    files = FileLifecycle(
        statuses=statuses,
        objects=objects,
        js=js,
        index=index,
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
    return IngestParts(js, objects, statuses, index, answers, files, sources)
