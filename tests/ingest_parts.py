"""Ingest's stores as ``obdal_ingest.main`` wires them (``obdal_ingest.stores``), on a NATS of a
test's own and an in-memory index: for tests that drive ingest's domain objects directly."""

from __future__ import annotations

from pathlib import Path

from nats.aio.client import Client as NATS

from obdal_common.outbound import OutboundClient
from obdal_common.settings import ObdalSettings
from obdal_ingest.settings import IngestSettings
from obdal_ingest.stores import IngestStores, open_stores
from obdal_retrieval import HybridIndex, open_index

__all__ = ["ingest_parts"]


async def ingest_parts(
    nc: NATS, data_dir: Path, *, client: OutboundClient, settings: IngestSettings
) -> tuple[IngestStores, HybridIndex]:
    """Every store over ``nc``, and the index they write (the caller closes it with ``close_indexes``)."""
    index = await open_index(ObdalSettings(data_dir=data_dir, qdrant_url=":memory:"))
    return await open_stores(nc, index=index, client=client, settings=settings), index
